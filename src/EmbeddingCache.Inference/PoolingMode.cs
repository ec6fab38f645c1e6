namespace EmbeddingCache.Inference;

/// <summary>
/// How the token vectors of the model's last hidden state become one sentence vector, each exactly as
/// sentence-transformers' Pooling module computes it over the tokens under the attention mask.
/// </summary>
public enum PoolingMode
{
    /// <summary>The average of the token vectors under the attention mask (<c>pooling_mode_mean_tokens</c>).</summary>
    Mean,

    /// <summary>The vector of the first token, <c>[CLS]</c> (<c>pooling_mode_cls_token</c>).</summary>
    Cls,

    /// <summary>The largest value of each dimension over the tokens under the mask (<c>pooling_mode_max_tokens</c>).</summary>
    Max,

    /// <summary>The sum of the token vectors divided by the square root of their count (<c>pooling_mode_mean_sqrt_len_tokens</c>).</summary>
    MeanSqrtLength,

    /// <summary>The mean weighted by position, the first token weighing 1, the second 2, ... (<c>pooling_mode_weightedmean_tokens</c>).</summary>
    WeightedMean,

    /// <summary>The vector of the last token under the mask (<c>pooling_mode_lasttoken</c>).</summary>
    LastToken,
}
