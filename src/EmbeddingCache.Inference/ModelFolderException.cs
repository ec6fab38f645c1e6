namespace EmbeddingCache.Inference;

/// <summary>A model folder cannot be used: a file is missing, unreadable or says something we cannot honour.</summary>
public sealed class ModelFolderException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ModelFolderException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public ModelFolderException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public ModelFolderException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for one file of the folder.</summary>
    public ModelFolderException(string message, string? filePath, Exception? innerException = null)
        : base(message, innerException)
    {
        FilePath = filePath;
    }

    /// <summary>The file at fault, when one is; the message names it too.</summary>
    public string? FilePath { get; }
}
