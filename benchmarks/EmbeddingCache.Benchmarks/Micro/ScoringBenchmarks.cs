using BenchmarkDotNet.Attributes;
using EmbeddingCache.Engine;
using EmbeddingCache.Inference;
using MathNet.Numerics.LinearAlgebra;

namespace EmbeddingCache.Benchmarks.Micro;

/// <summary>
/// Score's kernel, the (queries x documents) cosine matrix of a reranker warm-start, two ways: the engine's
/// System.Numerics.Tensors dot products (what Score runs) against MathNet.Numerics' dense matrix product
/// over normalised rows. The faster one belongs on the hot path.
/// </summary>
[MemoryDiagnoser]
public class ScoringBenchmarks
{
    private const int Dims = 384;
    private float[] _queries = [];
    private float[] _documents = [];

    /// <summary>Queries per Score call.</summary>
    [Params(1, 32)]
    public int Queries { get; set; }

    /// <summary>Candidate documents per query (a BM25 top-100 or top-1000).</summary>
    [Params(100, 1000)]
    public int Documents { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(42);
        _queries = Enumerable.Range(0, Queries * Dims).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        _documents = Enumerable.Range(0, Documents * Dims).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
    }

    [Benchmark(Baseline = true)]
    public float[] TensorPrimitivesDots() => SimilarityScorer.Matrix(_queries, _documents, Dims, SimilarityFunction.Cosine);

    [Benchmark]
    public float[] MathNetMatrixProduct()
    {
        var queries = Matrix<float>.Build.DenseOfRowMajor(Queries, Dims, _queries).NormalizeRows(2);
        var documents = Matrix<float>.Build.DenseOfRowMajor(Documents, Dims, _documents).NormalizeRows(2);
        return queries.TransposeAndMultiply(documents).ToRowMajorArray();
    }
}
