namespace EmbeddingCache.Storage;

/// <summary>What an invalidation removed: committed rows (superseded ones included) and their bytes on disk.</summary>
public readonly record struct InvalidationResult(long RowsRemoved, long BytesRemoved);
