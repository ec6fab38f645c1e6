using System.Buffers;

namespace EmbeddingCache.Inference;

/// <summary>
/// The token ids of one text, in an array of exactly its length: a queue of 100,000 texts then holds what they
/// need (about 200 bytes for a typical sentence), not a max-tokens buffer each.
/// </summary>
internal readonly struct TokenizedText
{
    private const int StackallocLimit = 1024;

    private readonly int[] _ids;

    private TokenizedText(int[] ids) => _ids = ids;

    /// <summary>Token count, [CLS] and [SEP] included.</summary>
    public int Length => _ids.Length;

    public ReadOnlySpan<int> Ids => _ids;

    public static TokenizedText Create(WordPieceTokenizer tokenizer, string text)
    {
        long[]? rented = null;
        var scratch = tokenizer.MaxTokens <= StackallocLimit
            ? stackalloc long[tokenizer.MaxTokens]
            : (rented = ArrayPool<long>.Shared.Rent(tokenizer.MaxTokens));
        try
        {
            var count = tokenizer.Tokenize(text, scratch);
            var ids = new int[count];
            for (var i = 0; i < count; i++)
            {
                ids[i] = checked((int)scratch[i]);
            }

            return new TokenizedText(ids);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<long>.Shared.Return(rented);
            }
        }
    }
}
