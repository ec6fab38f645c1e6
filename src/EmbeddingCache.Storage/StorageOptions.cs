namespace EmbeddingCache.Storage;

/// <summary>
/// Settings of the storage engine. Defaults suit a research workstation; <see cref="Validate"/> is called
/// by <see cref="ArtifactsRoot.Open"/>, and the server reports every one of <see cref="Problems"/> at start-up.
/// </summary>
/// <remarks>
/// Adding a setting: give it a default on the property, explain the default in its doc comment, check it
/// in <see cref="Problems"/>, and record it in the cache manifest if it shapes files on disk.
/// </remarks>
public sealed class StorageOptions
{
    /// <summary>Largest <see cref="SegmentRows"/>: the row count is an 8-digit field in the .npy header.</summary>
    public const int MaxSegmentRows = 99_999_999;

    /// <summary>Largest <see cref="PublishIntervalMs"/>: a minute; followers lag by up to this much.</summary>
    public const int MaxPublishIntervalMs = 60_000;

    /// <summary>Largest <see cref="InvalidatedRetentionSeconds"/>: a day.</summary>
    public const int MaxInvalidatedRetentionSeconds = 86_400;

    /// <summary>
    /// When appends are acknowledged. Default <see cref="DurabilityMode.GroupCommit"/>: after an fsync
    /// shared by every append queued at that moment.
    /// </summary>
    public DurabilityMode Durability { get; set; } = DurabilityMode.GroupCommit;

    /// <summary>
    /// Rows per segment before it is sealed (made immutable, sized exactly) and a new one is started.
    /// Default 65,536: 100 MB per segment at 384 float32 dims, a size that copies to object storage well.
    /// At most <see cref="MaxSegmentRows"/>.
    /// </summary>
    public int SegmentRows { get; set; } = 65536;

    /// <summary>
    /// How fast a cache's vector pages are read into memory in the background after it opens, in bytes per second;
    /// 0 turns warming off. Default 256 MiB/s: a 3 GB cache (2 million 384-float rows) is warm in about 12 s, while the
    /// throttle leaves most of a core to requests. Opening never waits for warming.
    /// </summary>
    public long WarmBytesPerSecond { get; set; } = 256L << 20;

    /// <summary>
    /// Longest wait, in milliseconds, between a commit and the kind manifest that publishes it to followers; a last
    /// publish follows a burst once it is quiet. Default 50: at most 20 small manifest writes a second per kind, while a
    /// follower sees a row within a tenth of a second of its acknowledgement. 0 publishes after every commit.
    /// </summary>
    public int PublishIntervalMs { get; set; } = 50;

    /// <summary>
    /// Seconds an invalidated generation's files are kept (renamed aside) before they are deleted, so that a follower
    /// still reading them gets no error. Default 60: far longer than any follower takes to see the new generation.
    /// 0 deletes them at once.
    /// </summary>
    public int InvalidatedRetentionSeconds { get; set; } = 60;

    /// <summary>
    /// Every setting out of range, each as "<c>Setting is value; it must be …</c>", so that a person reading it
    /// knows which setting to change and to what. Empty when the options are usable.
    /// </summary>
    public IEnumerable<string> Problems()
    {
        if (SegmentRows is < 1 or > MaxSegmentRows)
        {
            yield return $"{nameof(SegmentRows)} is {SegmentRows}; it must be from 1 to {MaxSegmentRows}";
        }
        if (WarmBytesPerSecond < 0)
        {
            yield return $"{nameof(WarmBytesPerSecond)} is {WarmBytesPerSecond}; it must be 0 (no warming) or more";
        }
        if (PublishIntervalMs is < 0 or > MaxPublishIntervalMs)
        {
            yield return $"{nameof(PublishIntervalMs)} is {PublishIntervalMs}; it must be from 0 to {MaxPublishIntervalMs}";
        }
        if (InvalidatedRetentionSeconds is < 0 or > MaxInvalidatedRetentionSeconds)
        {
            yield return $"{nameof(InvalidatedRetentionSeconds)} is {InvalidatedRetentionSeconds}; it must be from 0 to {MaxInvalidatedRetentionSeconds}";
        }
        if (!Enum.IsDefined(Durability))
        {
            yield return $"{nameof(Durability)} is {Durability}; it must be one of {string.Join(", ", Enum.GetNames<DurabilityMode>())}";
        }
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> with the first of <see cref="Problems"/>.</summary>
    public void Validate()
    {
        if (Problems().FirstOrDefault() is { } problem)
        {
            throw new ArgumentOutOfRangeException(paramName: null, problem);
        }
    }
}
