namespace EmbeddingCache.Engine;

/// <summary>
/// Follower mode (<c>--follow</c>, or <c>EmbeddingCache:Follow:Enabled=true</c>): the server serves an artifacts root that
/// another server (its writer) writes, on the same disk or a copy kept in sync by a file tool. It takes no lock, writes no
/// file under the root, and refuses every write with FAILED_PRECONDITION naming the writer.
/// </summary>
public sealed class FollowOptions
{
    /// <summary>Largest <see cref="PollIntervalMs"/>: a minute.</summary>
    public const int MaxPollIntervalMs = 60_000;

    /// <summary>Serve the artifacts root read-only, following what its writer publishes. Default false: this server is the writer.</summary>
    public bool Enabled { get; set; }

    /// <summary>The writer's address, named in every refusal so that a misrouted write says where to go. Optional.</summary>
    public string? WriterAddress { get; set; }

    /// <summary>
    /// How often the published manifests are read, in milliseconds. Default 100: a row the writer acknowledged is served
    /// here within PublishIntervalMs + PollIntervalMs plus one poll, while a poll of an unchanged root reads a few small files.
    /// </summary>
    public int PollIntervalMs { get; set; } = 100;

    /// <summary>Every setting out of range, as "<c>Setting is value; it must be …</c>".</summary>
    public IEnumerable<string> Problems()
    {
        if (PollIntervalMs is < 1 or > MaxPollIntervalMs)
        {
            yield return $"{nameof(PollIntervalMs)} is {PollIntervalMs}; it must be from 1 to {MaxPollIntervalMs}";
        }
    }
}
