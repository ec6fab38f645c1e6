using System.Buffers;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine;

/// <summary>Where a returned row came from; the numbers match the wire enum.</summary>
public enum RowSource : byte
{
    /// <summary>Not cached and not computed: the row is zero-filled.</summary>
    Missing = 1,
    /// <summary>Served from the cache.</summary>
    Cached = 2,
    /// <summary>Computed for this request and written back.</summary>
    Computed = 3,
}

/// <summary>
/// Rows packed little-endian, row-major, as they travel on the wire, in a buffer rented from the shared pool: a
/// fresh buffer per call costs a page fault per 4 KiB on first touch, more than the gather itself. Dispose returns
/// it (the server does once the reply is written); <see cref="Data"/> must not be used after.
/// </summary>
public sealed class PackedVectors : IDisposable
{
    private readonly int length;
    private byte[]? rented;

    internal PackedVectors(int count, int dims, VectorDType dtype)
    {
        Count = count;
        Dims = dims;
        DType = dtype;
        length = checked(count * dims * dtype.BytesPerElement());
        rented = length == 0 ? [] : ArrayPool<byte>.Shared.Rent(length);
    }

    /// <summary>Rows.</summary>
    public int Count { get; }

    /// <summary>Elements per row.</summary>
    public int Dims { get; }

    /// <summary>Element type of <see cref="Data"/>.</summary>
    public VectorDType DType { get; }

    /// <summary>The packed rows: <see cref="Count"/> x <see cref="Dims"/> elements of <see cref="DType"/>.</summary>
    public Memory<byte> Data => (rented ?? throw new ObjectDisposedException(nameof(PackedVectors))).AsMemory(0, length);

    /// <summary>Returns the buffer to the pool; safe to call twice.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref rented, null) is { Length: > 0 } buffer) ArrayPool<byte>.Shared.Return(buffer);
    }
}

/// <summary>Embed: one vector per text, computing and writing back the misses.</summary>
public sealed record EmbedCommand(
    string Model, VectorKind Kind, IReadOnlyList<string> Texts, IReadOnlyList<string> Ids,
    VectorDType DType, bool CacheOnly);

/// <summary>Get: cached vectors by ids or by texts, never computing.</summary>
public sealed record GetCommand(
    string Model, VectorKind Kind, IReadOnlyList<string> Ids, IReadOnlyList<string> Texts, VectorDType DType);

/// <summary>Put: vectors made elsewhere, stored under ids and/or texts.</summary>
public sealed record PutCommand(
    string Model, VectorKind Kind, IReadOnlyList<string> Ids, IReadOnlyList<string> Texts,
    int Count, int Dims, VectorDType DType, ReadOnlyMemory<byte> Data);

/// <summary>
/// Where a request's time went, for the caller to see why a call was slow: cache lookup, tokenizing its
/// misses, waiting for a batch slot, ONNX Runtime, and the durable write-back.
/// </summary>
public readonly record struct RequestTimings(TimeSpan Lookup, TimeSpan Tokenize, TimeSpan Queue, TimeSpan Inference, TimeSpan Write);

/// <summary>Rows in input order, with their sources. Dispose returns the rows' pooled buffer (see <see cref="PackedVectors"/>).</summary>
public sealed record LookupResult(PackedVectors Vectors, RowSource[] Sources, string Fingerprint, RequestTimings Timings) : IDisposable
{
    /// <inheritdoc/>
    public void Dispose() => Vectors.Dispose();

    /// <summary>How many rows have <paramref name="source"/>.</summary>
    public int CountOf(RowSource source) => Sources.Count(s => s == source);
}

/// <summary>
/// One model as ListModels shows it; <paramref name="Settings"/> and <paramref name="OnnxFile"/> say how its vectors are made
/// (null for a store-only model, and for a folder not read yet).
/// </summary>
public sealed record ModelStatus(
    string Name, int Dims, bool CanCompute, string Fingerprint, long QueryRows, long DocumentRows,
    long Bytes, long Hits, long Misses, string? Error, ModelSettings? Settings, string? OnnxFile);

/// <summary>Score: the model's similarity of queries against candidate documents given by ids and/or texts.</summary>
public sealed record ScoreCommand(
    string Model, IReadOnlyList<string> Queries, IReadOnlyList<string> DocumentIds, IReadOnlyList<string> DocumentTexts, int TopK);

/// <summary>The (queries x documents) cosine matrix, where the vectors came from, and the best documents per query when asked.</summary>
public sealed record ScoreResult(
    int QueryCount, int DocumentCount, float[] Scores, RowSource[] QuerySources, RowSource[] DocumentSources,
    IReadOnlyList<(int Index, float Score)[]> Top);

/// <summary>One query's candidate documents: ids, and optionally a text per id (null: none) to compute a missing id from.</summary>
public sealed record QueryCandidates(IReadOnlyList<string> Ids, IReadOnlyList<string?> Texts);

/// <summary>Rerank: each query scored against its own candidates (BEIR's shape), one entry of <paramref name="Candidates"/> per query.</summary>
public sealed record RerankCommand(string Model, IReadOnlyList<string> Queries, IReadOnlyList<QueryCandidates> Candidates, int TopK);

/// <summary>
/// Each query's scores aligned with its own candidates, query after query (<see cref="Counts"/>[i] belong to query i);
/// a candidate neither cached nor given a text scores NaN and is <see cref="RowSource.Missing"/>.
/// </summary>
public sealed record RerankResult(
    float[] Scores, int[] Counts, RowSource[] CandidateSources, RowSource[] QuerySources,
    IReadOnlyList<(int Index, float Score)[]> Top);
