using System.Globalization;

namespace EmbeddingCache.Benchmarks.Infrastructure;

/// <summary>
/// Reads a verb's arguments one at a time (<c>--name value</c> or a bare <c>--flag</c>); every refusal names the argument
/// and carries the verb's usage, so all verbs answer a bad command line the same way.
/// </summary>
internal sealed class VerbArguments(IReadOnlyList<string> args, string usage)
{
    private int _index = -1;

    /// <summary>Moves to the next argument name; false once all are read.</summary>
    public bool MoveNext() => ++_index < args.Count;

    /// <summary>The argument name being read.</summary>
    public string Current => args[_index];

    /// <summary>The value that follows the current name.</summary>
    public string Value()
    {
        var name = Current;
        return ++_index < args.Count ? args[_index] : throw Error($"{name} needs a value.");
    }

    /// <summary>The value that follows the current name, as a whole number.</summary>
    public int Int()
    {
        var name = Current;
        var text = Value();
        return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw Error($"{name} must be a whole number, not '{text}'.");
    }

    /// <summary>The value that follows the current name, as a whole number above zero.</summary>
    public int PositiveInt()
    {
        var name = Current;
        var value = Int();
        return value > 0 ? value : throw Error($"{name} must be a positive whole number, not '{value}'.");
    }

    /// <summary>The current name is not one the verb takes.</summary>
    public ArgumentException Unknown() => Error($"Unknown argument '{Current}'.");

    /// <summary>A refusal with the verb's usage after it.</summary>
    public ArgumentException Error(string message) => new($"{message}\n{usage}");
}
