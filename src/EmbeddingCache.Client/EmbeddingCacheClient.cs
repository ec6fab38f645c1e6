using System.Runtime.InteropServices;
using EmbeddingCache.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Rpc = EmbeddingCache.Protocol.V1.EmbeddingCache;

namespace EmbeddingCache.Client;

/// <summary>
/// A connection to an EmbeddingCache server. Vectors come back as <see cref="VectorRows"/>: spans over the
/// reply's own bytes, with no per-float copy. Errors surface as <see cref="RpcException"/> carrying the
/// server's status and message. Every call that names a model sends it as the <see cref="ModelHeader"/> request header
/// too (calls made through <see cref="Rpc"/> included), for a proxy to route on.
/// </summary>
public sealed class EmbeddingCacheClient : IDisposable
{
    private readonly GrpcChannel? ownedChannel;
    private readonly Rpc.EmbeddingCacheClient rpc;

    /// <summary>
    /// Connects to <paramref name="address"/>, e.g. "http://127.0.0.1:50051", with no message size limits; reads failing
    /// UNAVAILABLE are retried (<see cref="ReadRetry"/>).
    /// </summary>
    public EmbeddingCacheClient(string address)
    {
        ownedChannel = GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = null,
            MaxSendMessageSize = null,
            ServiceConfig = ReadRetry.ServiceConfig(),
        });
        rpc = new Rpc.EmbeddingCacheClient(ownedChannel.Intercept(new ModelHeaderInterceptor()));
    }

    /// <summary>Uses a channel the caller owns (and disposes).</summary>
    public EmbeddingCacheClient(ChannelBase channel) => rpc = new Rpc.EmbeddingCacheClient(channel.Intercept(new ModelHeaderInterceptor()));

    /// <summary>
    /// The generated client, for the fields these methods do not expose. Its unary calls carry <see cref="ModelHeader"/>;
    /// a stream's model is known only from its messages, so open EmbedStream with <see cref="EmbedStream"/>.
    /// </summary>
    public Rpc.EmbeddingCacheClient Rpc => rpc;

    /// <summary>An EmbedStream call whose requests all name <paramref name="model"/> (sent as <see cref="ModelHeader"/> up front).</summary>
    public AsyncDuplexStreamingCall<EmbedRequest, EmbedResponse> EmbedStream(string model, CancellationToken cancellationToken = default) =>
        rpc.EmbedStream(ModelHeader.Add(null, model), cancellationToken: cancellationToken);

    /// <summary>One vector per text in input order: cached rows served, the rest computed and cached.</summary>
    public async Task<EmbedResult> EmbedAsync(
        string model, IEnumerable<string> texts, Kind kind = Kind.Document, IEnumerable<string>? ids = null,
        DType dtype = DType.Float32, bool cacheOnly = false, CancellationToken cancellationToken = default)
    {
        var request = new EmbedRequest { Model = model, Kind = kind, Dtype = dtype, CacheOnly = cacheOnly, Texts = { texts } };
        if (ids is not null) request.Ids.AddRange(ids);
        var response = await rpc.EmbedAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false);
        return new EmbedResult(new VectorRows(response.Vectors), [.. response.Sources], response.Fingerprint);
    }

    /// <summary>Cached vectors by ids, never computing; missing rows are zero and marked <see cref="RowSource.Missing"/>.</summary>
    public async Task<EmbedResult> GetByIdsAsync(
        string model, IEnumerable<string> ids, Kind kind = Kind.Document, DType dtype = DType.Float32, CancellationToken cancellationToken = default)
    {
        var response = await rpc.GetAsync(new GetRequest { Model = model, Kind = kind, Dtype = dtype, Ids = { ids } },
            cancellationToken: cancellationToken).ConfigureAwait(false);
        return new EmbedResult(new VectorRows(response.Vectors), [.. response.Sources], "");
    }

    /// <summary>Stores float32 rows (row-major, <paramref name="dims"/> wide) under ids and/or texts; returns rows stored.</summary>
    public async Task<int> PutAsync(
        string model, ReadOnlyMemory<float> vectors, int dims, IEnumerable<string>? ids = null, IEnumerable<string>? texts = null,
        Kind kind = Kind.Document, CancellationToken cancellationToken = default)
    {
        var request = new PutRequest
        {
            Model = model,
            Kind = kind,
            Vectors = new Vectors
            {
                Count = (uint)(vectors.Length / dims),
                Dims = (uint)dims,
                Dtype = DType.Float32,
                Data = ByteString.CopyFrom(MemoryMarshal.AsBytes(vectors.Span)),
            },
        };
        if (ids is not null) request.Ids.AddRange(ids);
        if (texts is not null) request.Texts.AddRange(texts);
        var response = await rpc.PutAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false);
        return (int)response.Stored;
    }

    /// <summary>Drops a model's cache, or one kind of it; returns rows and bytes removed.</summary>
    public async Task<InvalidateResponse> InvalidateAsync(string model, Kind kind = Kind.Unspecified, CancellationToken cancellationToken = default) =>
        await rpc.InvalidateAsync(new InvalidateRequest { Model = model, Kind = kind }, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>Every model the server knows, with counts, hits and misses.</summary>
    public async Task<IReadOnlyList<ModelInfo>> ListModelsAsync(CancellationToken cancellationToken = default) =>
        (await rpc.ListModelsAsync(new ListModelsRequest(), cancellationToken: cancellationToken).ConfigureAwait(false)).Models;

    /// <summary>Cosine scores of queries against documents by ids and/or texts, and the top-k per query when asked.</summary>
    public async Task<ScoreResponse> ScoreAsync(
        string model, IEnumerable<string> queries, IEnumerable<string>? documentIds = null, IEnumerable<string>? documentTexts = null,
        int topK = 0, CancellationToken cancellationToken = default)
    {
        var request = new ScoreRequest { Model = model, Queries = { queries }, TopK = (uint)topK };
        if (documentIds is not null) request.DocumentIds.AddRange(documentIds);
        if (documentTexts is not null) request.DocumentTexts.AddRange(documentTexts);
        return await rpc.ScoreAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Disposes the channel if this client created it.</summary>
    public void Dispose() => ownedChannel?.Dispose();
}

/// <summary>Rows and where each came from.</summary>
public sealed record EmbedResult(VectorRows Vectors, IReadOnlyList<RowSource> Sources, string Fingerprint);

/// <summary>Packed rows as they arrived: row-major little-endian, read in place.</summary>
public sealed class VectorRows(Vectors vectors)
{
    /// <summary>Number of rows.</summary>
    public int Count { get; } = (int)vectors.Count;

    /// <summary>Floats per row.</summary>
    public int Dims { get; } = (int)vectors.Dims;

    /// <summary>Element type of the rows.</summary>
    public DType DType { get; } = vectors.Dtype == DType.Float16 ? DType.Float16 : DType.Float32;

    /// <summary>The raw bytes, as numpy would read them.</summary>
    public ReadOnlyMemory<byte> Bytes { get; } = vectors.Data.Memory;

    /// <summary>All rows as float32 (replies asked with <see cref="DType.Float32"/>).</summary>
    public ReadOnlySpan<float> Floats => DType == DType.Float32
        ? MemoryMarshal.Cast<byte, float>(Bytes.Span)
        : throw new InvalidOperationException("these rows are float16: read them with Halves");

    /// <summary>All rows as float16 (replies asked with <see cref="DType.Float16"/>).</summary>
    public ReadOnlySpan<Half> Halves => DType == DType.Float16
        ? MemoryMarshal.Cast<byte, Half>(Bytes.Span)
        : throw new InvalidOperationException("these rows are float32: read them with Floats");

    /// <summary>Row <paramref name="index"/> as float32.</summary>
    public ReadOnlySpan<float> Row(int index) => Floats.Slice(index * Dims, Dims);
}
