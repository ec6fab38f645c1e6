namespace EmbeddingCache.Storage;

/// <summary>
/// What a model's cache holds: vector shape and type, and the fingerprint of the model that made them.
/// A cache opened with a different <see cref="Fingerprint"/>, <see cref="Dims"/> or <see cref="DType"/>
/// drops its vectors, so nothing made by another model is ever served.
/// </summary>
public sealed record CacheDescriptor
{
    /// <summary>Largest accepted vector width.</summary>
    public const int MaxDims = 65536;

    /// <summary>Vector width; 1 to <see cref="MaxDims"/>.</summary>
    public required int Dims { get; init; }

    /// <summary>Storage element type. Default float32.</summary>
    public VectorDType DType { get; init; } = VectorDType.Float32;

    /// <summary>Hash of the model files and settings; <c>""</c> for a store-only model.</summary>
    public required string Fingerprint { get; init; }

    /// <summary>Where the model came from (manifest metadata only), e.g. <c>sentence-transformers/all-MiniLM-L6-v2</c>.</summary>
    public string? BaseModel { get; init; }

    /// <summary>The model's page on the Hugging Face Hub (manifest metadata only).</summary>
    public string? HuggingFaceUrl { get; init; }

    /// <summary>True when the server cannot compute this model's vectors; they are only Put.</summary>
    public bool StoreOnly { get; init; }

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(Dims, 1, nameof(Dims));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Dims, MaxDims, nameof(Dims));
        ArgumentNullException.ThrowIfNull(Fingerprint);
        if (DType is not (VectorDType.Float32 or VectorDType.Float16))
        {
            throw new ArgumentOutOfRangeException(nameof(DType), DType, "Unknown vector dtype.");
        }
    }
}
