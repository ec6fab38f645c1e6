using System.Text.Json;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Server.OpenAi;

/// <summary>
/// A <c>POST /v1/embeddings</c> body, read as OpenAI defines it: <c>model</c>, <c>input</c> (a string or a list of
/// strings), <c>encoding_format</c> (<c>float</c>, the default, or <c>base64</c>), <c>dimensions</c>; plus this
/// server's extension <c>input_type</c>: <c>document</c> (the default) or <c>query</c>, the kind the texts are
/// embedded and cached as. Other fields (<c>user</c>, ...) are ignored.
/// </summary>
internal sealed record EmbeddingsRequest(string Model, string[] Input, bool Base64, int? Dimensions, VectorKind Kind)
{
    /// <summary>The request in <paramref name="body"/>, or <see cref="OpenAiException"/> naming the parameter at fault.</summary>
    public static EmbeddingsRequest Parse(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object)
        {
            throw OpenAiException.Invalid(null, "the request body must be a JSON object with at least 'model' and 'input'");
        }
        return new EmbeddingsRequest(
            RequiredString(body, "model"),
            ReadInput(body),
            Choice(body, "encoding_format", ["float", "base64"], "float") == "base64",
            ReadDimensions(body),
            VectorKindNames.Parse(Choice(body, "input_type", [VectorKindNames.Document, VectorKindNames.Query], VectorKindNames.Document)));
    }

    private static string RequiredString(JsonElement body, string name) =>
        body.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()!
            : throw OpenAiException.Invalid(name, $"'{name}' is missing or not a string");

    private static string[] ReadInput(JsonElement body)
    {
        if (!body.TryGetProperty("input", out var input)) throw OpenAiException.Invalid("input", "'input' is missing: send a string or a list of strings");
        if (input.ValueKind == JsonValueKind.String) return [input.GetString()!];
        if (input.ValueKind != JsonValueKind.Array) throw OpenAiException.Invalid("input", "'input' must be a string or a list of strings");
        if (input.GetArrayLength() == 0) throw OpenAiException.Invalid("input", "'input' is an empty list: send at least one text");
        var texts = new string[input.GetArrayLength()];
        var i = 0;
        foreach (var item in input.EnumerateArray())
        {
            texts[i] = item.ValueKind switch
            {
                JsonValueKind.String => item.GetString()!,
                // Token ids belong to OpenAI's tokenizer, not to the model served here: refuse rather than guess.
                JsonValueKind.Number or JsonValueKind.Array => throw OpenAiException.Invalid("input",
                    "'input' as token ids is not supported: this server tokenizes with each model's own vocabulary, send the texts instead"),
                _ => throw OpenAiException.Invalid("input", $"input[{i}] is not a string: 'input' must be a string or a list of strings"),
            };
            i++;
        }
        return texts;
    }

    private static string Choice(JsonElement body, string name, string[] allowed, string fallback)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return fallback;
        if (value.ValueKind == JsonValueKind.String && allowed.Contains(value.GetString())) return value.GetString()!;
        throw OpenAiException.Invalid(name, $"'{name}' is {value.GetRawText()}; it must be one of {string.Join(", ", allowed.Select(a => $"\"{a}\""))} (default \"{fallback}\")");
    }

    private static int? ReadDimensions(JsonElement body)
    {
        if (!body.TryGetProperty("dimensions", out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var dimensions) && dimensions > 0
            ? dimensions
            : throw OpenAiException.Invalid("dimensions", $"'dimensions' is {value.GetRawText()}; it must be a positive integer");
    }
}
