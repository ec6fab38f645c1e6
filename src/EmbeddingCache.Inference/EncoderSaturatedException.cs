namespace EmbeddingCache.Inference;

/// <summary>
/// The batcher held as many texts as <see cref="EncoderOptions.MaxQueuedTexts"/> allows for all of
/// <see cref="EncoderOptions.MaxQueueWait"/>, or a call has more texts than the queue can ever hold; the caller
/// should back off (the server maps this to RESOURCE_EXHAUSTED) rather than queue without bound.
/// </summary>
public sealed class EncoderSaturatedException : Exception
{
    /// <summary>Creates the exception.</summary>
    public EncoderSaturatedException()
        : base("The encoder queue is full; retry later or send fewer texts at once.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public EncoderSaturatedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    public EncoderSaturatedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
