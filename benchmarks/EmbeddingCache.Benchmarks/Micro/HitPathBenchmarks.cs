using System.Globalization;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using EmbeddingCache.Engine;
using EmbeddingCache.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace EmbeddingCache.Benchmarks.Micro;

/// <summary>
/// The engine's side of a hit, in process: Get by ids over a store-only cache of 10,000 rows of 384 floats. The
/// Allocated column is the per-call garbage of lookup and gather (the rows themselves live in a pooled buffer);
/// gRPC's own parsing and framing are not in it.
/// </summary>
[MemoryDiagnoser]
public class HitPathBenchmarks
{
    private const int Dims = 384;
    private const int CachedRows = 10_000;
    private string _root = "";
    private EmbeddingCacheEngine? _engine;
    private GetCommand? _command;

    /// <summary>Ids per Get.</summary>
    [Params(32, 1000)]
    public int Rows { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _root = Path.Combine(Path.GetTempPath(), "embcache-hitpath-bench-" + Guid.NewGuid().ToString("N"));
        _engine = EmbeddingCacheEngine.Open(new EngineOptions { ArtifactsDirectory = _root, PreloadModels = [] }, NullLoggerFactory.Instance);
        var random = new Random(42);
        float[] vectors = [.. Enumerable.Range(0, CachedRows * Dims).Select(_ => (float)random.NextDouble())];
        string[] ids = [.. Enumerable.Range(0, CachedRows).Select(Id)];
        _engine.PutAsync(new PutCommand("bench", VectorKind.Document, ids, [], CachedRows, Dims, VectorDType.Float32,
            MemoryMarshal.AsBytes(vectors.AsSpan()).ToArray()), CancellationToken.None).GetAwaiter().GetResult();
        _command = new GetCommand("bench", VectorKind.Document, [.. Enumerable.Range(0, Rows).Select(_ => Id(random.Next(CachedRows)))], [], VectorDType.Float32);
    }

    [Benchmark]
    public async Task<int> GetByIds()
    {
        using var result = await _engine!.GetAsync(_command!, CancellationToken.None).ConfigureAwait(false);
        return result.Vectors.Count;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _engine!.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Directory.Delete(_root, recursive: true);
    }

    private static string Id(int n) => "doc-" + n.ToString(CultureInfo.InvariantCulture);
}
