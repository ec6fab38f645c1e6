using System.Numerics.Tensors;
using EmbeddingCache.Inference;

namespace EmbeddingCache.Engine;

/// <summary>
/// Dense scoring of queries against candidate documents: cosine (one dot product per pair over pre-computed norms),
/// or the model's own <see cref="SimilarityFunction"/>, with System.Numerics.Tensors' SIMD kernels.
/// </summary>
internal static class SimilarityScorer
{
    /// <summary>The (queries x documents) matrix of <paramref name="similarity"/>, row-major; a zero vector has cosine 0 to everything.</summary>
    public static float[] Matrix(ReadOnlySpan<float> queries, ReadOnlySpan<float> documents, int dims, SimilarityFunction similarity)
    {
        var scratch = new float[dims];
        var queryCount = queries.Length / dims;
        var documentCount = documents.Length / dims;
        var documentNorms = Norms(documents, dims);
        var scores = new float[queryCount * documentCount];
        for (var q = 0; q < queryCount; q++)
        {
            var query = queries.Slice(q * dims, dims);
            var queryNorm = TensorPrimitives.Norm(query);
            for (var d = 0; d < documentCount; d++)
            {
                scores[q * documentCount + d] = PairSimilarity.Score(similarity, query, queryNorm, documents.Slice(d * dims, dims), documentNorms[d], scratch);
            }
        }
        return scores;
    }

    /// <summary>The <paramref name="k"/> best documents of one query's scores, best first (ties: lower index first).</summary>
    public static (int Index, float Score)[] Top(ReadOnlySpan<float> scores, int k)
    {
        k = Math.Min(k, scores.Length);
        // A min-heap of the best k so far: O(n log k) rather than sorting every score.
        var best = new PriorityQueue<int, (float Score, int NegativeIndex)>(k + 1);
        for (var i = 0; i < scores.Length; i++)
        {
            best.Enqueue(i, (scores[i], -i));
            if (best.Count > k) best.Dequeue();
        }
        var top = new (int, float)[best.Count];
        for (var i = top.Length - 1; i >= 0; i--)
        {
            var index = best.Dequeue();
            top[i] = (index, scores[index]);
        }
        return top;
    }

    private static float[] Norms(ReadOnlySpan<float> rows, int dims)
    {
        var norms = new float[rows.Length / dims];
        for (var r = 0; r < norms.Length; r++) norms[r] = TensorPrimitives.Norm(rows.Slice(r * dims, dims));
        return norms;
    }
}
