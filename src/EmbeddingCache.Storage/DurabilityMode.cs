namespace EmbeddingCache.Storage;

/// <summary>When an append is acknowledged.</summary>
public enum DurabilityMode
{
    /// <summary>
    /// After the rows of every append queued at the same time are written and fsynced together
    /// (two fsyncs per group); survives power loss.
    /// </summary>
    GroupCommit,

    /// <summary>
    /// After the rows are written to the page cache, without fsync. Survives a crash of the process but
    /// not of the machine; the files still satisfy the format invariants after either.
    /// </summary>
    None,
}
