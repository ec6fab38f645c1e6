namespace EmbeddingCache.Inference;

/// <summary>How the token vectors of the model's last hidden state become one sentence vector.</summary>
public enum PoolingMode
{
    /// <summary>The average of the token vectors under the attention mask (sentence-transformers' default).</summary>
    Mean,

    /// <summary>The vector of the first token, <c>[CLS]</c>.</summary>
    Cls,
}
