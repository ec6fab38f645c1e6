using EmbeddingCache.Inference;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine;

/// <summary>
/// Every setting of the cache engine, with its default. To add one: give it a property here with the
/// default on it, check it in <see cref="Problems"/>, and say in its doc what the default means.
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

    /// <summary>Follower mode: serve a root another server writes, read-only.</summary>
    public FollowOptions Follow { get; set; } = new();

    /// <summary>Smallest reply limit allowed: health, ListModels and error replies must always fit.</summary>
    public const int MinSendMessageBytes = 4096;

    /// <summary>The configuration section a person sets these options in (see <see cref="SettingName"/>).</summary>
    public const string Section = "EmbeddingCache";

    /// <summary>How a person sets <paramref name="property"/>, for messages that tell them which setting to raise.</summary>
    public static string SettingName(string property) => $"{Section}:{property}";

    /// <summary>
    /// Every setting out of range, this class's and its <see cref="Storage"/>, <see cref="Encoder"/> and <see cref="Follow"/> settings',
    /// each as "<c>EmbeddingCache:Setting is value; it must be …</c>", so that a person reading it knows which
    /// setting to change and to what. Empty when the options are usable.
    /// </summary>
    public IEnumerable<string> Problems()
    {
        var own = OwnProblems();
        var storage = Storage.Problems().Select(problem => $"{nameof(Storage)}:{problem}");
        var encoder = Encoder.Problems().Select(problem => $"{nameof(Encoder)}:{problem}");
        var follow = Follow.Problems().Select(problem => $"{nameof(Follow)}:{problem}");
        return own.Concat(storage).Concat(encoder).Concat(follow).Select(SettingName);
    }

    /// <summary>Null when the options are usable, otherwise the first of <see cref="Problems"/>.</summary>
    public string? Validate() => Problems().FirstOrDefault();

    private IEnumerable<string> OwnProblems()
    {
        if (string.IsNullOrWhiteSpace(ArtifactsDirectory))
        {
            yield return $"{nameof(ArtifactsDirectory)} is empty; it must name a directory";
        }
        if (MaxRowsPerRequest < 1)
        {
            yield return $"{nameof(MaxRowsPerRequest)} is {MaxRowsPerRequest}; it must be at least 1";
        }
        if (MaxTextLength < 1)
        {
            yield return $"{nameof(MaxTextLength)} is {MaxTextLength}; it must be at least 1";
        }
        if (MaxIdLength < 1)
        {
            yield return $"{nameof(MaxIdLength)} is {MaxIdLength}; it must be at least 1";
        }
        if (MaxDims < 1)
        {
            yield return $"{nameof(MaxDims)} is {MaxDims}; it must be at least 1";
        }
        if (MaxScoresPerRequest < 1)
        {
            yield return $"{nameof(MaxScoresPerRequest)} is {MaxScoresPerRequest}; it must be at least 1";
        }
        if (MaxSendMessageBytes < MinSendMessageBytes)
        {
            yield return $"{nameof(MaxSendMessageBytes)} is {MaxSendMessageBytes}; it must be at least {MinSendMessageBytes}";
        }
        foreach (var model in PreloadModels)
        {
            if (ModelName.Problem(model) is { } problem)
            {
                yield return $"{nameof(PreloadModels)} holds '{model}': {problem}";
            }
        }
    }
}
