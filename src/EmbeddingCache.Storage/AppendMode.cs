namespace EmbeddingCache.Storage;

/// <summary>What an append does with rows whose key (or id) is already stored.</summary>
public enum AppendMode
{
    /// <summary>Always writes; the newest row for a key or id is what reads return.</summary>
    Overwrite,

    /// <summary>
    /// Skips a row whose key is already committed and, if the row has an id, whose id already maps to the
    /// row holding that key. Used when writing back computed misses, which are identical on a repeat.
    /// </summary>
    IfAbsent,
}
