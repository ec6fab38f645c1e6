using System.Numerics.Tensors;
using EmbeddingCache.Inference;

namespace EmbeddingCache.Engine;

/// <summary>
/// One query-document score under a model's <see cref="SimilarityFunction"/>, with sentence-transformers' signs:
/// larger is more similar, so the distances come negated.
/// </summary>
internal static class PairSimilarity
{
    /// <summary>
    /// The score of <paramref name="a"/> against <paramref name="b"/>; their norms are passed in, computed once per row, and
    /// <paramref name="scratch"/> (as long as a row) is room for the Manhattan distance. A zero vector has cosine 0 to everything.
    /// </summary>
    public static float Score(SimilarityFunction measure, ReadOnlySpan<float> a, float aNorm, ReadOnlySpan<float> b, float bNorm, Span<float> scratch)
    {
        switch (measure)
        {
            case SimilarityFunction.Cosine:
                var denominator = aNorm * bNorm;
                return denominator == 0 ? 0 : TensorPrimitives.Dot(a, b) / denominator;
            case SimilarityFunction.Dot:
                return TensorPrimitives.Dot(a, b);
            case SimilarityFunction.Euclidean:
                return -TensorPrimitives.Distance(a, b);
            case SimilarityFunction.Manhattan:
                TensorPrimitives.Subtract(a, b, scratch);
                return -TensorPrimitives.SumOfMagnitudes(scratch);
            default:
                throw new ArgumentOutOfRangeException(nameof(measure), measure, "Unknown similarity function.");
        }
    }
}
