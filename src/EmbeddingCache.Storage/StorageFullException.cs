namespace EmbeddingCache.Storage;

/// <summary>
/// The disk (or quota) holding the artifacts directory is full. Nothing of the failed append became
/// visible; appends work again once space is freed.
/// </summary>
public sealed class StorageFullException : IOException
{
    /// <summary>Creates the exception.</summary>
    public StorageFullException()
        : base("The disk holding the artifacts directory is full.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public StorageFullException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the I/O error that reported the full disk.</summary>
    public StorageFullException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
