namespace EmbeddingCache.Inference;

/// <summary>One text of a request, with its tokens, waiting for a batch.</summary>
internal sealed class QueuedText(EncodingRequest request, int index, TokenizedText tokens)
{
    public TokenizedText Tokens { get; } = tokens;

    public EncodingRequest Request { get; } = request;

    /// <summary>Its row in the caller's output.</summary>
    public int Index { get; } = index;

    public int Length { get; } = tokens.Length;

    /// <summary>Arrival order across all callers.</summary>
    public long Sequence { get; set; }

    /// <summary>Counted as encoded or dropped, and its room given back: done with, whatever its caller hears.</summary>
    public bool Finished { get; set; }
}
