using System.Buffers;
using System.Globalization;
using System.Text;

namespace EmbeddingCache.Inference;

/// <summary>
/// The character classes of Hugging Face's BERT pre-tokenization (clean text, split on whitespace,
/// punctuation and around CJK ideographs), used to find the words FastBertTokenizer treats differently.
/// </summary>
internal static class BertTextRules
{
    /// <summary>Hugging Face WordPiece turns a word longer than this (in code points, after normalisation) into one [UNK] by default.</summary>
    public const int DefaultMaxCharsPerWord = 100;

    /// <summary>
    /// Finds the words of <paramref name="text"/> that Hugging Face maps to a single [UNK] because they are longer
    /// than <paramref name="maxCharsPerWord"/>. Returns their UTF-16 ranges in text order, or null when there are none
    /// (the common case, which allocates nothing).
    /// </summary>
    public static List<Range>? FindOverlongWords(string text, bool lowerCase, bool stripAccents, int maxCharsPerWord)
    {
        List<Range>? found = null;
        var wordStart = -1;
        var index = 0;
        while (index < text.Length)
        {
            var c = text[index];
            int width;
            bool separates, removed;
            if (c < 0x80)
            {
                width = 1;
                removed = c == 0 || (c < 0x20 && c is not ('\t' or '\n' or '\r')) || c == 0x7F;
                separates = !removed && (c is ' ' or '\t' or '\n' or '\r' || IsAsciiPunctuation(c));
            }
            else
            {
                if (Rune.DecodeFromUtf16(text.AsSpan(index), out var rune, out width) != OperationStatus.Done)
                {
                    // A lone surrogate: Hugging Face's clean-up removes it like any other category C character.
                    removed = true;
                    separates = false;
                    width = 1;
                }
                else
                {
                    removed = IsRemoved(rune);
                    separates = !removed && (Rune.IsWhiteSpace(rune) || IsPunctuation(rune) || IsCjkIdeograph(rune.Value));
                }
            }

            if (separates)
            {
                if (wordStart >= 0)
                {
                    Check(text, wordStart, index, lowerCase, stripAccents, maxCharsPerWord, ref found);
                    wordStart = -1;
                }
            }
            else if (!removed && wordStart < 0)
            {
                wordStart = index;
            }

            index += width;
        }

        if (wordStart >= 0)
        {
            Check(text, wordStart, text.Length, lowerCase, stripAccents, maxCharsPerWord, ref found);
        }

        return found;
    }

    private static void Check(string text, int start, int end, bool lowerCase, bool stripAccents, int maxCharsPerWord, ref List<Range>? found)
    {
        // Normalisation expands a code point to at most three that count (a Hangul syllable to its jamo), so a
        // word this short cannot be over the limit and needs no closer look.
        if ((end - start) * 3 <= maxCharsPerWord)
        {
            return;
        }

        if (NormalizedLength(text.AsSpan(start, end - start), lowerCase, stripAccents) > maxCharsPerWord)
        {
            (found ??= []).Add(new Range(start, end));
        }
    }

    /// <summary>The code point count Hugging Face's WordPiece sees: cleaned, lowercased, accents stripped (NFD without Mn).</summary>
    private static int NormalizedLength(ReadOnlySpan<char> word, bool lowerCase, bool stripAccents)
    {
        var cleaned = new StringBuilder(word.Length);
        foreach (var rune in word.EnumerateRunes())
        {
            if (!IsRemoved(rune))
            {
                cleaned.Append(rune.ToString());
            }
        }

        var form = cleaned.ToString();
        if (lowerCase)
        {
            form = form.ToLowerInvariant();
        }

        return stripAccents ? CountRunes(form.Normalize(NormalizationForm.FormD), skipMarks: true) : CountRunes(form, skipMarks: false);
    }

    private static int CountRunes(string text, bool skipMarks)
    {
        var count = 0;
        foreach (var rune in text.EnumerateRunes())
        {
            if (!skipMarks || Rune.GetUnicodeCategory(rune) != UnicodeCategory.NonSpacingMark)
            {
                count++;
            }
        }

        return count;
    }

    /// <summary>Characters the clean-up step deletes: NUL, U+FFFD and category C except tab, newline and carriage return.</summary>
    private static bool IsRemoved(Rune rune)
    {
        if (rune.Value is 0 or 0xFFFD)
        {
            return true;
        }

        if (rune.Value is '\t' or '\n' or '\r')
        {
            return false;
        }

        return Rune.GetUnicodeCategory(rune) is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
            or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned;
    }

    private static bool IsAsciiPunctuation(char c) => c is (>= '!' and <= '/') or (>= ':' and <= '@') or (>= '[' and <= '`') or (>= '{' and <= '~');

    private static bool IsPunctuation(Rune rune)
    {
        if (rune.IsAscii)
        {
            return IsAsciiPunctuation((char)rune.Value);
        }

        return Rune.GetUnicodeCategory(rune) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    /// <summary>The CJK Unified Ideograph blocks BERT puts spaces around (not Hangul, Hiragana or Katakana).</summary>
    private static bool IsCjkIdeograph(int cp) =>
        cp is (>= 0x4E00 and <= 0x9FFF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x20000 and <= 0x2A6DF) or (>= 0x2A700 and <= 0x2B73F)
            or (>= 0x2B740 and <= 0x2B81F) or (>= 0x2B820 and <= 0x2CEAF) or (>= 0xF900 and <= 0xFAFF) or (>= 0x2F800 and <= 0x2FA1F);
}
