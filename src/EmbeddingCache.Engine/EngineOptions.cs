using EmbeddingCache.Inference;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine;

/// <summary>
/// Every setting of the cache engine, with its default. To add one: give it a property here with the
/// default on it, validate it in <see cref="Validate"/>, and say in its doc what the default means.
/// </summary>
public sealed class EngineOptions
{
    /// <summary>The artifacts root: models/, embeddings/ and logs/ live under it.</summary>
    public string ArtifactsDirectory { get; set; } = "artifacts";

    /// <summary>Models loaded (and warmed) at start-up; health reports SERVING once they are ready.</summary>
    public List<string> PreloadModels { get; set; } = [BuiltInModels.MiniLM];

    /// <summary>Texts (or ids, or rows) in one request; more is RESOURCE_EXHAUSTED.</summary>
    public int MaxRowsPerRequest { get; set; } = 65_536;

    /// <summary>UTF-16 characters in one text; a longer text is RESOURCE_EXHAUSTED (the model reads at most 512 tokens anyway).</summary>
    public int MaxTextLength { get; set; } = 1 << 20;

    /// <summary>Longest id accepted.</summary>
    public int MaxIdLength { get; set; } = 1024;

    /// <summary>Query x document pairs in one Score request (4 bytes each in the reply); more is RESOURCE_EXHAUSTED.</summary>
    public long MaxScoresPerRequest { get; set; } = 16_000_000;

    /// <summary>
    /// Largest reply message sent, in bytes: 512 MiB by default, a Get or Embed of 65,536 rows of 2,048 float32 dims.
    /// A request whose reply would be larger is refused with RESOURCE_EXHAUSTED before any row is gathered (its size
    /// is known from the rows asked for and the model's dims); the gRPC layer enforces the same bound on every reply.
    /// It lives here, not with the server's transport settings, because the engine must refuse before it allocates.
    /// </summary>
    public int MaxSendMessageBytes { get; set; } = 512 * 1024 * 1024;

    /// <summary>Widest vector a store-only model may be created with.</summary>
    public int MaxDims { get; set; } = 65_536;

    /// <summary>
    /// Unload a model's ONNX session after it computed nothing for this long (its cache keeps serving hits,
    /// the next miss loads it again). Zero, the default, keeps encoders loaded.
    /// </summary>
    public TimeSpan UnloadIdleEncodersAfter { get; set; } = TimeSpan.Zero;

    /// <summary>Storage settings: durability policy and segment size.</summary>
    public StorageOptions Storage { get; set; } = new();

    /// <summary>ONNX Runtime and batcher settings.</summary>
    public EncoderOptions Encoder { get; set; } = new();

    /// <summary>Smallest reply limit allowed: health, ListModels and error replies must always fit.</summary>
    public const int MinSendMessageBytes = 4096;

    /// <summary>How a person sets <paramref name="property"/>, for messages that tell them which setting to raise.</summary>
    public static string SettingName(string property) => $"EmbeddingCache:{property}";

    /// <summary>Null when the options are usable, otherwise what is wrong.</summary>
    public string? Validate()
    {
        if (string.IsNullOrWhiteSpace(ArtifactsDirectory)) return "ArtifactsDirectory is empty";
        if (MaxRowsPerRequest < 1) return "MaxRowsPerRequest must be at least 1";
        if (MaxTextLength < 1) return "MaxTextLength must be at least 1";
        if (MaxIdLength < 1) return "MaxIdLength must be at least 1";
        if (MaxDims < 1) return "MaxDims must be at least 1";
        if (MaxScoresPerRequest < 1) return "MaxScoresPerRequest must be at least 1";
        if (MaxSendMessageBytes < MinSendMessageBytes) return $"MaxSendMessageBytes must be at least {MinSendMessageBytes}";
        foreach (var model in PreloadModels)
        {
            if (ModelName.Problem(model) is { } problem) return $"PreloadModels: {problem}";
        }
        return null;
    }
}
