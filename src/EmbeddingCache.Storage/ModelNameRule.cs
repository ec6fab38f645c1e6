using System.Buffers;

namespace EmbeddingCache.Storage;

/// <summary>
/// Model names become folder names under the artifacts root, so only a safe alphabet is accepted:
/// nothing that could leave the root (separators, "..", NUL, absolute paths) or be over-long. The one rule for
/// them: the artifacts root checks the folders it lists and opens with it, the engine the names in requests.
/// </summary>
public static class ModelNameRule
{
    /// <summary>Longest accepted name; far below any file system's limit for one path component.</summary>
    public const int MaxLength = 128;

    private static readonly SearchValues<char> Allowed =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");

    /// <summary>Null when <paramref name="name"/> is acceptable, otherwise why not.</summary>
    public static string? Problem(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "model is empty: name a model, e.g. 'all-MiniLM-L6-v2' (ListModels shows them all)";
        }
        if (name.Length > MaxLength)
        {
            return $"model name is {name.Length} characters long; at most {MaxLength} are allowed";
        }
        if (!char.IsAsciiLetterOrDigit(name[0]))
        {
            return $"model name '{Printable(name)}' must start with a letter or digit";
        }
        int bad = name.AsSpan().IndexOfAnyExcept(Allowed);
        if (bad >= 0)
        {
            return $"model name '{Printable(name)}' has the character {Describe(name[bad])} at {bad}; " +
                   "only letters, digits, '.', '_' and '-' are allowed";
        }
        if (name.Contains("..", StringComparison.Ordinal))
        {
            return $"model name '{name}' must not contain '..'";
        }
        return null;
    }

    private static string Printable(string name) =>
        new(name.Take(MaxLength).Select(c => char.IsControl(c) ? '?' : c).ToArray());

    private static string Describe(char c) => char.IsControl(c) || char.IsWhiteSpace(c)
        ? $"U+{(int)c:X4}"
        : $"'{c}'";
}
