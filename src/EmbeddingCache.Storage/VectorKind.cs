namespace EmbeddingCache.Storage;

/// <summary>
/// Which side of retrieval a vector embeds. The two kinds are stored apart (folders <c>query/</c> and
/// <c>document/</c>) because a model may prefix them differently and they are invalidated independently.
/// </summary>
public enum VectorKind
{
    /// <summary>A search query; folder <c>query/</c>.</summary>
    Query = 1,

    /// <summary>A passage or document; folder <c>document/</c>.</summary>
    Document = 2,
}
