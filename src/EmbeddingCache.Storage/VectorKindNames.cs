namespace EmbeddingCache.Storage;

/// <summary>
/// The name of each <see cref="VectorKind"/>, written once: it is the kind folder's name, the key of its count in
/// the model manifest, the value the CLI, the OpenAI endpoint and the metrics use, and part of sample file names.
/// </summary>
public static class VectorKindNames
{
    /// <summary>The name of <see cref="VectorKind.Query"/>.</summary>
    public const string Query = "query";

    /// <summary>The name of <see cref="VectorKind.Document"/>.</summary>
    public const string Document = "document";

    /// <summary>Every kind's name, queries first.</summary>
    public static IReadOnlyList<string> All { get; } = [Query, Document];

    /// <summary>The name of <paramref name="kind"/>.</summary>
    public static string Name(this VectorKind kind) => kind switch
    {
        VectorKind.Query => Query,
        VectorKind.Document => Document,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown vector kind."),
    };

    /// <summary>The kind named <paramref name="name"/>, which callers have checked is one of <see cref="All"/>.</summary>
    public static VectorKind Parse(string name) => name switch
    {
        Query => VectorKind.Query,
        Document => VectorKind.Document,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, $"A vector kind is '{Query}' or '{Document}'."),
    };
}
