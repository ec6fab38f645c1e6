using System.Numerics.Tensors;

namespace EmbeddingCache.Inference;

/// <summary>
/// sentence-transformers' Pooling module on one text's token vectors. Batches are right-padded, so the attention
/// mask is a prefix of <c>length</c> ones: every mode reads only those rows, which is what the module's masking
/// (zero weights for the mean, -1e9 for the max, the last index of a one for the last token) comes to.
/// </summary>
internal static class TokenPooling
{
    /// <summary>Pools <paramref name="tokens"/> (at least <paramref name="length"/> rows of <c>row.Length</c>) into <paramref name="row"/>.</summary>
    public static void Pool(PoolingMode mode, ReadOnlySpan<float> tokens, int length, Span<float> row)
    {
        var dims = row.Length;
        switch (mode)
        {
            case PoolingMode.Cls:
                tokens.Slice(0, dims).CopyTo(row);
                break;
            case PoolingMode.LastToken:
                tokens.Slice((length - 1) * dims, dims).CopyTo(row);
                break;
            case PoolingMode.Max:
                tokens.Slice(0, dims).CopyTo(row);
                for (var t = 1; t < length; t++)
                {
                    TensorPrimitives.Max(row, tokens.Slice(t * dims, dims), row);
                }

                break;
            case PoolingMode.WeightedMean:
                // Position t (from 0) weighs t + 1; the weights of the tokens sum to length (length + 1) / 2.
                row.Clear();
                for (var t = 0; t < length; t++)
                {
                    TensorPrimitives.MultiplyAdd(tokens.Slice(t * dims, dims), t + 1f, row, row);
                }

                TensorPrimitives.Divide(row, length * (length + 1) / 2f, row);
                break;
            case PoolingMode.Mean:
            case PoolingMode.MeanSqrtLength:
                tokens.Slice(0, dims).CopyTo(row);
                for (var t = 1; t < length; t++)
                {
                    TensorPrimitives.Add(row, tokens.Slice(t * dims, dims), row);
                }

                TensorPrimitives.Divide(row, mode == PoolingMode.MeanSqrtLength ? MathF.Sqrt(length) : length, row);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown pooling mode.");
        }
    }
}
