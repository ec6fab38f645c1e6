using System.Buffers;

namespace EmbeddingCache.Inference;

/// <summary>The token ids of one text, in a pooled buffer that <see cref="Release"/> gives back exactly once.</summary>
internal struct TokenizedText
{
    private long[]? _buffer;

    private TokenizedText(long[] buffer, int length)
    {
        _buffer = buffer;
        Length = length;
    }

    /// <summary>Token count, [CLS] and [SEP] included.</summary>
    public int Length { get; }

    public readonly ReadOnlySpan<long> Ids => _buffer.AsSpan(0, Length);

    public static TokenizedText Create(WordPieceTokenizer tokenizer, string text)
    {
        var buffer = ArrayPool<long>.Shared.Rent(tokenizer.MaxTokens);
        try
        {
            return new TokenizedText(buffer, tokenizer.Tokenize(text, buffer));
        }
        catch
        {
            ArrayPool<long>.Shared.Return(buffer);
            throw;
        }
    }

    public void Release()
    {
        if (_buffer is { } buffer)
        {
            _buffer = null;
            ArrayPool<long>.Shared.Return(buffer);
        }
    }
}
