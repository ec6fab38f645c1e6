using System.Buffers;
using System.Text.Json;
using FastBertTokenizer;

namespace EmbeddingCache.Inference;

/// <summary>
/// BERT WordPiece tokenization as Hugging Face does it, on top of FastBertTokenizer: the library does the work,
/// this class corrects the two places where it differs from the reference (words over 100 characters, and
/// truncation inside a word that would have become [UNK]). Thread-safe.
/// </summary>
internal sealed class WordPieceTokenizer
{
    private const int StackallocLimit = 1024;

    private readonly BertTokenizer _tokenizer;
    private readonly bool _lowerCase;
    private readonly bool _stripAccents;
    private readonly int _maxCharsPerWord;

    // Room past the truncation point so the library always finishes the word that crosses it: a word of at most
    // _maxCharsPerWord characters never yields more pieces than that. We then cut at MaxTokens ourselves.
    private readonly int _slack;

    private WordPieceTokenizer(BertTokenizer tokenizer, int maxTokens, TokenizerRules rules, long clsId, long sepId, long unkId, long padId)
    {
        _tokenizer = tokenizer;
        MaxTokens = maxTokens;
        _lowerCase = rules.LowerCase;
        _stripAccents = rules.StripAccents;
        _maxCharsPerWord = rules.MaxCharsPerWord;
        _slack = rules.MaxCharsPerWord + 28;
        ClsId = clsId;
        SepId = sepId;
        UnkId = unkId;
        PadId = padId;
    }

    /// <summary>The most ids <see cref="Tokenize"/> writes, [CLS] and [SEP] included.</summary>
    public int MaxTokens { get; }

    public long ClsId { get; }

    public long SepId { get; }

    public long UnkId { get; }

    public long PadId { get; }

    public static WordPieceTokenizer Load(ModelDefinition model)
    {
        var path = model.TokenizerPath;
        var isVocab = string.Equals(Path.GetFileName(path), ModelDefinition.VocabFileName, StringComparison.Ordinal);
        var tokenizer = new BertTokenizer();
        long unkId, padId;
        TokenizerRules rules;
        try
        {
            if (isVocab)
            {
                var vocabulary = File.ReadAllLines(path);
                unkId = Array.IndexOf(vocabulary, "[UNK]");
                padId = Math.Max(0, Array.IndexOf(vocabulary, "[PAD]"));
                using var reader = new StreamReader(path);
                tokenizer.LoadVocabulary(reader, model.Settings.LowerCase);
                rules = new TokenizerRules(model.Settings.LowerCase, model.Settings.LowerCase, BertTextRules.DefaultMaxCharsPerWord);
            }
            else
            {
                using (var stream = File.OpenRead(path))
                {
                    tokenizer.LoadTokenizerJson(stream);
                }

                (unkId, padId, rules) = ReadTokenizerJson(path);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The library reports a malformed or unsupported file in many ways (even a NullReferenceException for a
            // missing section); whichever it is, the file is at fault and the message must say which.
            throw new ModelFolderException($"'{path}' is not a usable BERT WordPiece tokenizer: {e.Message}", path, e);
        }

        if (unkId < 0)
        {
            throw new ModelFolderException($"'{path}' has no [UNK] token.", path);
        }

        Span<long> ids = stackalloc long[2];
        Span<long> mask = stackalloc long[2];
        tokenizer.Encode("", ids, mask);
        return new WordPieceTokenizer(tokenizer, model.Settings.MaxTokens, rules, ids[0], ids[1], unkId, padId);
    }

    /// <summary>The number of ids <see cref="Tokenize"/> would write.</summary>
    public int Count(string text)
    {
        if (MaxTokens <= StackallocLimit)
        {
            Span<long> ids = stackalloc long[MaxTokens];
            return Tokenize(text, ids);
        }

        var rented = ArrayPool<long>.Shared.Rent(MaxTokens);
        try
        {
            return Tokenize(text, rented);
        }
        finally
        {
            ArrayPool<long>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Writes [CLS], the first pieces of <paramref name="text"/> (at most <see cref="MaxTokens"/> − 2) and [SEP]
    /// into <paramref name="ids"/>, which must hold <see cref="MaxTokens"/>; returns how many were written.
    /// </summary>
    public int Tokenize(string text, Span<long> ids)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (ids.Length < MaxTokens)
        {
            throw new ArgumentException($"Needs room for {MaxTokens} ids.", nameof(ids));
        }

        var overlong = BertTextRules.FindOverlongWords(text, _lowerCase, _stripAccents, _maxCharsPerWord);
        var pieceBudget = MaxTokens - 2;
        var written = overlong is null
            ? AppendPieces(text, ids.Slice(1), pieceBudget)
            : AppendPiecesAroundOverlongWords(text, overlong, ids.Slice(1), pieceBudget);
        ids[0] = ClsId;
        ids[1 + written] = SepId;
        return written + 2;
    }

    private int AppendPiecesAroundOverlongWords(string text, List<Range> overlong, Span<long> sink, int budget)
    {
        // Hugging Face pre-tokenization splits at whitespace and punctuation only, so the text between two such
        // words tokenizes alone exactly as it does in context; each word itself is one [UNK].
        var written = 0;
        var position = 0;
        foreach (var word in overlong)
        {
            var (start, length) = word.GetOffsetAndLength(text.Length);
            written += AppendPieces(text[position..start], sink.Slice(written), budget - written);
            if (written < budget)
            {
                sink[written++] = UnkId;
            }

            position = start + length;
        }

        written += AppendPieces(text[position..], sink.Slice(written), budget - written);
        return written;
    }

    /// <summary>Writes at most <paramref name="budget"/> WordPiece ids of <paramref name="text"/> (no [CLS]/[SEP]) into sink.</summary>
    private int AppendPieces(string text, Span<long> sink, int budget)
    {
        if (budget <= 0 || text.Length == 0)
        {
            return 0;
        }

        var capacity = budget + _slack + 2;
        long[]? rented = null;
        var scratch = capacity <= StackallocLimit
            ? stackalloc long[capacity * 2]
            : (rented = ArrayPool<long>.Shared.Rent(capacity * 2)).AsSpan(0, capacity * 2);
        try
        {
            var ids = scratch.Slice(0, capacity);
            var mask = scratch.Slice(capacity, capacity);
            var count = _tokenizer.Encode(text, ids, mask);

            // The library always frames its output with [CLS] … [SEP]; keep the pieces between.
            var pieces = Math.Min(count - 2, budget);
            ids.Slice(1, pieces).CopyTo(sink);
            return pieces;
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<long>.Shared.Return(rented);
            }
        }
    }

    private static (long UnkId, long PadId, TokenizerRules Rules) ReadTokenizerJson(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = document.RootElement;
        var model = root.GetProperty("model");
        var vocabulary = model.GetProperty("vocab");
        var unkToken = model.TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String ? unk.GetString()! : "[UNK]";
        var unkId = vocabulary.TryGetProperty(unkToken, out var unkValue) ? unkValue.GetInt64() : -1;
        var padId = vocabulary.TryGetProperty("[PAD]", out var padValue) ? padValue.GetInt64() : 0;
        var maxChars = model.TryGetProperty("max_input_chars_per_word", out var max) && max.ValueKind == JsonValueKind.Number
            ? max.GetInt32()
            : BertTextRules.DefaultMaxCharsPerWord;
        var normalizer = root.TryGetProperty("normalizer", out var section) && section.ValueKind == JsonValueKind.Object ? section : default;
        var lowerCase = normalizer.ValueKind == JsonValueKind.Object && normalizer.TryGetProperty("lowercase", out var lower) && lower.ValueKind == JsonValueKind.True;

        // As in Hugging Face's BertNormalizer: strip_accents null means "as lowercase".
        var stripAccents = normalizer.ValueKind == JsonValueKind.Object && normalizer.TryGetProperty("strip_accents", out var strip)
            && strip.ValueKind is JsonValueKind.True or JsonValueKind.False
                ? strip.ValueKind == JsonValueKind.True
                : lowerCase;
        return (unkId, padId, new TokenizerRules(lowerCase, stripAccents, maxChars));
    }

    private readonly record struct TokenizerRules(bool LowerCase, bool StripAccents, int MaxCharsPerWord);
}
