using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace EmbeddingCache.Engine.CacheFiles;

/// <summary>What verify found in the files of one kind: the committed rows it could read and what is wrong.</summary>
public sealed record KindFilesReport(VectorKind Kind, int Segments, long Rows, int Dims, string Descr, IReadOnlyList<string> Problems);

/// <summary>
/// Cached rows of a kind recomputed with the model on disk: how many (none when no sampled text is cached any
/// more) and the lowest cosine between a stored row and its fresh vector.
/// </summary>
public sealed record RecomputeReport(VectorKind Kind, string Source, int Recomputed, double MinCosine)
{
    /// <summary>True when every recomputed row is within <see cref="CacheVerifier.MinCosine"/> of what is stored.</summary>
    public bool Passed => MinCosine >= CacheVerifier.MinCosine;
}

/// <summary>
/// <c>verify</c>: checks every file of a model's cache (through <see cref="KindFolderReader"/>, without the root lock,
/// so next to a live server) and recomputes a sample of cached rows with the model on disk, which catches a change
/// of ONNX Runtime or of a model file that the fingerprint missed.
/// </summary>
public static class CacheVerifier
{
    /// <summary>Lowest cosine between a stored row and its recomputed vector that passes (the fidelity bar of the encoder).</summary>
    public const double MinCosine = 0.9999;

    // One corpus text in this many is a sample candidate, drawn with a fixed seed so that runs compare.
    private const int CorpusSampleEvery = 4;
    private const int CorpusSampleSeed = 17;

    private static readonly VectorKind[] Kinds = [VectorKind.Query, VectorKind.Document];

    /// <summary>Reads the files of both kinds of <paramref name="model"/>'s cache.</summary>
    /// <exception cref="DirectoryNotFoundException">The model has no cache under the root.</exception>
    /// <exception cref="InvalidDataException">The cache manifest cannot be read.</exception>
    public static IReadOnlyList<KindFilesReport> CheckFiles(string artifactsRoot, string model) =>
        Kinds.Select(kind =>
        {
            using var reader = KindFolderReader.Open(artifactsRoot, model, kind);
            return new KindFilesReport(kind, reader.Segments.Count, reader.RowCount, reader.Dims, reader.Descr, reader.Problems);
        }).ToList();

    /// <summary>
    /// Recomputes up to <paramref name="sampleSize"/> cached rows among texts of a corpus the cache was warmed from
    /// (one in four, with the model's prefix for <paramref name="kind"/> applied as the server applies it).
    /// </summary>
    /// <exception cref="ModelFolderException">The model folder cannot be loaded.</exception>
    public static RecomputeReport RecomputeCorpus(
        string artifactsRoot, string model, VectorKind kind, IEnumerable<string> texts, string corpusName, int sampleSize)
    {
        var definition = LoadDefinition(artifactsRoot, model);
        var random = new Random(CorpusSampleSeed);
        var inputs = texts.Where(_ => random.Next(CorpusSampleEvery) == 0).Select(text => ServedModel.TokenizerInputOf(definition, kind, text));
        return Recompute(artifactsRoot, definition, kind, inputs, sampleSize, $"texts of {corpusName}");
    }

    /// <summary>
    /// Recomputes up to <paramref name="sampleSize"/> cached rows per kind among the tokenizer inputs the server
    /// recorded (<see cref="VerifySamples"/>), since the cache keeps only their hashes. Kinds with none recorded are left out.
    /// </summary>
    /// <exception cref="ModelFolderException">The model folder cannot be loaded.</exception>
    public static IReadOnlyList<RecomputeReport> RecomputeRecorded(string artifactsRoot, string model, int sampleSize)
    {
        var definition = LoadDefinition(artifactsRoot, model);
        string embeddings = Path.Combine(artifactsRoot, ArtifactsRoot.EmbeddingsFolderName);
        var reports = new List<RecomputeReport>();
        foreach (var kind in Kinds)
        {
            var inputs = VerifySamples.Read(embeddings, model, kind);
            if (inputs.Count > 0) reports.Add(Recompute(artifactsRoot, definition, kind, inputs, sampleSize, $"recorded {kind} texts"));
        }
        return reports;
    }

    private static ModelDefinition LoadDefinition(string artifactsRoot, string model) =>
        ModelDefinition.Load(Path.Combine(artifactsRoot, ArtifactsRoot.ModelsFolderName, model));

    private static RecomputeReport Recompute(
        string artifactsRoot, ModelDefinition definition, VectorKind kind, IEnumerable<string> inputs, int sampleSize, string source)
    {
        using var encoder = TextEncoder.Load(definition, new EncoderOptions(), NullLoggerFactory.Instance);
        using var reader = KindFolderReader.Open(artifactsRoot, definition.Name, kind);
        if (encoder.Dims != reader.Dims)
        {
            throw new InvalidDataException($"the model on disk makes {encoder.Dims}-dim vectors but the cache holds {reader.Dims}-dim rows");
        }
        var rowByKey = new Dictionary<ContentKey, StoredRow>();
        foreach (var row in reader.LiveRows())
        {
            if (row.Key is { } key) rowByKey[key] = row;
        }
        var texts = inputs.Where(input => rowByKey.ContainsKey(ContentKey.FromText(input))).Take(sampleSize).ToArray();
        if (texts.Length == 0) return new RecomputeReport(kind, source, 0, 1);
        var fresh = new float[texts.Length * encoder.Dims];
        encoder.Encode(texts, fresh);
        var stored = new byte[reader.RowBytes];
        var storedFloats = new float[reader.Dims];
        double worst = 1;
        for (int i = 0; i < texts.Length; i++)
        {
            reader.ReadVector(rowByKey[ContentKey.FromText(texts[i])], stored);
            if (reader.DType == VectorDType.Float16) TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(stored), storedFloats);
            else MemoryMarshal.Cast<byte, float>(stored).CopyTo(storedFloats);
            worst = Math.Min(worst, TensorPrimitives.CosineSimilarity(storedFloats, fresh.AsSpan(i * encoder.Dims, encoder.Dims)));
        }
        return new RecomputeReport(kind, source, texts.Length, worst);
    }
}
