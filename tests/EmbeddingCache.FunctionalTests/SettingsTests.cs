using EmbeddingCache.FunctionalTests.Infrastructure;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>A bad setting stops the server at start-up with a message a person can act on, not a stack trace.</summary>
public sealed class SettingsTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task Bad_settings_stop_the_start_naming_each_setting_its_value_and_what_is_allowed()
    {
        // Bad settings of each options class (engine, storage, encoder, server): every one is reported at once.
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => StartServerAsync(
            "--EmbeddingCache:MaxSendMessageBytes=100",
            "--EmbeddingCache:Storage:SegmentRows=0",
            "--EmbeddingCache:Encoder:MaxBatchSize=-3",
            "--EmbeddingCache:OpenAiPort=70000",
            "--EmbeddingCache:Http2StreamWindowBytes=5"));
        var log = refused.Message;

        Assert.Contains("embcache exited with code 1 before listening", log);
        Assert.Contains("embcache: EmbeddingCache:MaxSendMessageBytes is 100; it must be at least 4096", log);
        Assert.Contains("embcache: EmbeddingCache:Storage:SegmentRows is 0; it must be from 1 to 99999999", log);
        Assert.Contains("embcache: EmbeddingCache:Encoder:MaxBatchSize is -3; it must be at least 1", log);
        Assert.Contains("embcache: EmbeddingCache:OpenAiPort is 70000; it must be a port number, 1 to 65535, or 0 (off)", log);
        Assert.Contains("embcache: EmbeddingCache:Http2StreamWindowBytes is 5; it must be at least 65535 (HTTP/2's minimum)", log);
        Assert.DoesNotContain("Unhandled exception", log);
        Assert.False(Directory.Exists(Path.Combine(Artifacts.Path, "embeddings")), "the artifacts root was opened despite the bad settings");
    }
}
