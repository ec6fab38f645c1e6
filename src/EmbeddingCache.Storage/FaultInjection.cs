namespace EmbeddingCache.Storage;

/// <summary>
/// Test-only switches that break durability on purpose, so that the power-cut test can show it catches a missing
/// fsync. Read once from the environment at start; never set them outside that test.
/// </summary>
internal static class FaultInjection
{
    /// <summary>
    /// EMBCACHE_TEST_SKIP_GROUP_COMMIT_FSYNC=1 skips the group commit's fdatasync of the rows and the sidecar records
    /// before the header count is rewritten: the header's own fdatasync still covers the rows, but not the sidecar.
    /// </summary>
    public static bool SkipGroupCommitSync { get; } = Environment.GetEnvironmentVariable("EMBCACHE_TEST_SKIP_GROUP_COMMIT_FSYNC") == "1";
}
