using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Vector pages are warmed in the background after start; readiness never waits for it (issue 5).</summary>
public sealed class PageWarmingTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task The_server_is_serving_before_its_cache_is_warm()
    {
        var server = await StartServerAsync();
        var random = new Random(3);
        for (int chunk = 0; chunk < 5; chunk++)
        {
            var ids = Enumerable.Range(chunk * 1000, 1000).Select(n => $"doc-{n}");
            await server.Client.PutAsync(new PutRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { ids }, Vectors = Wire.Pack(Wire.RandomRows(random, 1000, 384), 384) });
        }
        await server.StopAsync();

        // 7.7 MB at 256 KiB/s: warming takes half a minute, far longer than loading the model and answering health.
        var restarted = await StartServerAsync("--EmbeddingCache:Storage:WarmBytesPerSecond=262144");
        var lines = restarted.Log.Split('\n');
        int warming = Array.FindIndex(lines, line => line.Contains($"Warming cache {Wire.MiniLM} in the background", StringComparison.Ordinal));
        int ready = Array.FindIndex(lines, line => line.Contains("EmbeddingCache ready", StringComparison.Ordinal));
        Assert.True(warming >= 0, "the cache opened on start-up and began warming");
        Assert.True(ready > warming, "readiness came after warming began");
        Assert.DoesNotContain(lines, line => line.Contains($"Warmed cache {Wire.MiniLM}", StringComparison.Ordinal));

        var got = await restarted.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { "doc-4999", "doc-0" } });
        Assert.Equal(2u, got.FoundCount);
    }
}
