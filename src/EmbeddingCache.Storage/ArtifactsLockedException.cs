namespace EmbeddingCache.Storage;

/// <summary>
/// Another writer (this process or another) holds the artifacts directory. The message names the holder
/// (pid, command line, start time) so a person knows which process to stop.
/// </summary>
public sealed class ArtifactsLockedException : IOException
{
    /// <summary>Creates the exception.</summary>
    public ArtifactsLockedException()
        : base("The artifacts directory is held by another writer.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public ArtifactsLockedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the error that showed the lock was taken.</summary>
    public ArtifactsLockedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Process id of the holder, when it recorded one.</summary>
    public int? HolderProcessId { get; init; }

    /// <summary>Command line of the holder, when it recorded one.</summary>
    public string? HolderCommandLine { get; init; }

    /// <summary>When the holder process started (UTC), when it recorded it.</summary>
    public DateTimeOffset? HolderStartedAt { get; init; }
}
