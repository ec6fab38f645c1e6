using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine;

/// <summary>A model name from a request, checked by the one rule for model names, <see cref="ModelNameRule"/>.</summary>
public static class ModelName
{
    /// <summary>Longest accepted name: <see cref="ModelNameRule.MaxLength"/>.</summary>
    public const int MaxLength = ModelNameRule.MaxLength;

    /// <summary>Null when <paramref name="name"/> is acceptable, otherwise why not.</summary>
    public static string? Problem(string? name) => ModelNameRule.Problem(name);

    /// <summary>Throws INVALID_ARGUMENT for an unacceptable name.</summary>
    public static void Validate(string? name)
    {
        if (Problem(name) is { } problem)
        {
            CacheRequestException.ThrowInvalid("model", problem);
        }
    }
}
