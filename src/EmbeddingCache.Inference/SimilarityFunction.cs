namespace EmbeddingCache.Inference;

/// <summary>
/// The measure a model's vectors are compared with, as sentence-transformers' <c>similarity_fn_name</c> names it:
/// larger is more similar for every one, so the distances are negated.
/// </summary>
public enum SimilarityFunction
{
    /// <summary><c>cosine</c>: the dot product of the L2-normalised vectors; sentence-transformers' default.</summary>
    Cosine,

    /// <summary><c>dot</c>: the raw dot product.</summary>
    Dot,

    /// <summary><c>euclidean</c>: minus the L2 distance.</summary>
    Euclidean,

    /// <summary><c>manhattan</c>: minus the L1 distance.</summary>
    Manhattan,
}
