using System.Text;
using CsCheck;

namespace EmbeddingCache.Fuzzing;

/// <summary>
/// Generators of JSON text for fuzzing the readers of manifest and configuration files, shared by the test
/// projects that own those readers. A generated object knows, field by field, whether a reader must accept it,
/// so that a test checks not only "no crash" but also "nothing accepted wrongly".
/// </summary>
internal static class JsonFuzz
{
    /// <summary>System.Text.Json's default nesting limit; documents nested deeper must be refused.</summary>
    public const int ParserMaxDepth = 64;

    /// <summary>Scalars that break careless readers: huge and tiny numbers, exponents, escapes, lone surrogates.</summary>
    public static readonly Gen<string> OddScalar = Gen.OneOf(
        "0", "-0", "1", "-1", "1.5", "1e3", "1E-3", "1e400", "-1e400", "2147483647", "2147483648", "-2147483649",
        "9223372036854775808", "123456789012345678901234567890", "true", "false", "null",
        "\"\"", "\"\\u0000\"", "\"\\ud800\"", "\"384\"", "\"mean\"", "[]", "{}", "[1,2]", "{\"a\":1}");

    /// <summary>Fragments of JSON in random order: almost always malformed.</summary>
    public static readonly Gen<string> TokenSoup = Gen.OneOf(
        "{", "}", "[", "]", ":", ",", "\"", "\"dims\"", "\"pooling\"", "\"max_tokens\"", "384", "-1", "1e999", "true", "null",
        "\"<f4\"", "\\", "\\u", "/*", "*/", "//", " ", "\n", "\0", "\u00e9", "\ud83d\ude00", "\ufeff", "NaN", "Infinity")
        .Array[0, 40].Select(string.Concat);

    /// <summary>Any JSON value, nested a few levels.</summary>
    public static readonly Gen<string> AnyValue = Gen.Recursive<string>((depth, inner) => depth >= 4
        ? OddScalar
        : Gen.Frequency(
            (4, OddScalar),
            (1, inner.Array[0, 4].Select(items => "[" + string.Join(",", items) + "]")),
            (1, Gen.Select(Gen.String[Gen.Char.AlphaNumeric, 0, 8], inner).Array[0, 4]
                .Select(members => "{" + string.Join(",", members.DistinctBy(m => m.Item1).Select(m => Quote(m.Item1) + ":" + m.Item2)) + "}"))));

    /// <summary>Arrays nested either well within the parser's limit or far beyond it, with whether that is readable.</summary>
    public static readonly Gen<(string Json, bool Readable)> Nesting = Gen.OneOf(Gen.Int[1, 20], Gen.Int[100, 300])
        .Select(depth => (new string('[', depth) + new string(']', depth), depth + 1 < ParserMaxDepth));

    /// <summary>
    /// Members this reader does not know: ignored, unless nested past the parser's limit or with a key twice over
    /// (which of the two would a rewrite keep?).
    /// </summary>
    public static readonly Gen<(string Json, bool Readable)> ExtraMembers = Gen.Frequency(
        (1, AnyValue.Select(value => ($"\"x_twice\":{{\"a\":1,\"a\":{value}}},", false))),
        (3, Gen.Const(("", true))),
        (3, Gen.Select(Gen.String[Gen.Char.AlphaNumeric, 1, 10], AnyValue).Array[1, 4]
            .Select(members => (string.Concat(members.DistinctBy(m => m.Item1).Select(m => $"{Quote("x_" + m.Item1)}:{m.Item2},")), true))),
        (1, Nesting.Select(n => ($"\"nested\":{n.Json},", n.Readable))));

    /// <summary>One member of an object, or none (<see cref="Json"/> null), and whether a reader may accept the object with it.</summary>
    public readonly record struct Field(string Key, string? Json, bool Acceptable)
    {
        public override string ToString() => Json is null ? $"{Key} omitted" : $"{Key}: {Json} ({(Acceptable ? "ok" : "bad")})";
    }

    /// <summary>A field that may be omitted (or null) and otherwise must be a JSON string.</summary>
    public static Gen<Field> OptionalString(string key) => Gen.Frequency(
        (2, Gen.Const(new Field(key, null, true))),
        (1, Gen.Const(new Field(key, "null", true))),
        (3, Gen.String.Select(s => new Field(key, Quote(Utf8RoundTrip(s)), true))),
        (1, Gen.Const(new Field(key, "\"\\udc00 a lone surrogate\"", false))),
        (2, OddScalar.Where(s => !s.StartsWith('"') && s != "null").Select(s => new Field(key, s, false))));

    /// <summary>A field that may be omitted (or null) and otherwise must be true or false.</summary>
    public static Gen<Field> OptionalBool(string key) => Gen.Frequency(
        (2, Gen.Const(new Field(key, null, true))),
        (3, Gen.OneOf("true", "false").Select(s => new Field(key, s, true))),
        (2, OddScalar.Where(s => s is not ("true" or "false" or "null")).Select(s => new Field(key, s, false))));

    /// <summary>
    /// A field that may be omitted (when <paramref name="required"/> is false) and otherwise must be an integer in
    /// [<paramref name="min"/>, <paramref name="max"/>]; values just outside, huge, fractional or of another type are not.
    /// </summary>
    public static Gen<Field> Integer(string key, long min, long max, bool required) => Gen.Frequency(
        (2, Gen.Const(new Field(key, null, !required))),
        (4, Gen.Long[min, max].Select(n => new Field(key, n.ToString(System.Globalization.CultureInfo.InvariantCulture), true))),
        (2, Gen.OneOf(Gen.Long[long.MinValue, min - 1], Gen.Long[max + 1, long.MaxValue], Gen.Const(min - 1), Gen.Const(max + 1))
            .Select(n => new Field(key, n.ToString(System.Globalization.CultureInfo.InvariantCulture), false))),
        (2, OddScalar.Where(s => !IsIntegerIn(s, min, max) && (required || s != "null")).Select(s => new Field(key, s, false))));

    /// <summary>A JSON object of <paramref name="fields"/> (omitted ones left out) and <paramref name="extra"/> members, in that order.</summary>
    public static string Object(IEnumerable<Field> fields, string extra)
    {
        var json = new StringBuilder("{").Append(extra);
        foreach (var field in fields.Where(f => f.Json is not null))
        {
            json.Append(Quote(field.Key)).Append(':').Append(field.Json).Append(',');
        }
        if (json[^1] == ',') json.Length--;
        return json.Append('}').ToString();
    }

    /// <summary>A JSON string literal: quotes, backslashes and control characters escaped, everything else as is.</summary>
    public static string Quote(string text)
    {
        var json = new StringBuilder("\"");
        foreach (char c in text)
        {
            json.Append(c switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                < ' ' => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }
        return json.Append('"').ToString();
    }

    /// <summary>What a string becomes once written to a UTF-8 file: lone surrogates turn into U+FFFD.</summary>
    public static string Utf8RoundTrip(string text) => Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(text));

    private static bool IsIntegerIn(string json, long min, long max) =>
        long.TryParse(json, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long n)
        && n >= min && n <= max;
}
