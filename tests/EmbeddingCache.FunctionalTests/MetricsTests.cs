using System.Text.RegularExpressions;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Prometheus metrics on their own loopback port: rows by source, errors by status, disk bytes, stage times and batch shapes.</summary>
public sealed class MetricsTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task Metrics_count_rows_by_source_errors_by_code_disk_bytes_stage_times_and_batches()
    {
        int port = LoopbackPort.Free();
        var server = await StartServerAsync($"--EmbeddingCache:MetricsPort={port}");
        var texts = Wire.Texts(seed: 22, count: 3);
        await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
        await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
        await Assert.ThrowsAsync<RpcException>(async () => await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Texts = { "x" } }));

        using var http = new HttpClient();
        string metrics = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");
        Assert.Contains("embcache_rows_total{model=\"all-MiniLM-L6-v2\",kind=\"document\",source=\"computed\"} 3", metrics);
        Assert.Contains("embcache_rows_total{model=\"all-MiniLM-L6-v2\",kind=\"document\",source=\"cached\"} 3", metrics);
        Assert.Contains("embcache_rpc_total{method=\"/embeddingcache.v1.EmbeddingCache/Embed\",code=\"InvalidArgument\"} 1", metrics);
        Assert.Contains("embcache_rpc_duration_seconds_bucket{method=\"/embeddingcache.v1.EmbeddingCache/Embed\"", metrics);
        Assert.Contains("embcache_stage_seconds_sum{model=\"all-MiniLM-L6-v2\",stage=\"inference\"}", metrics);
        Assert.Contains("embcache_stage_seconds_bucket{model=\"all-MiniLM-L6-v2\",stage=\"queue\"", metrics);
        // The warm-up runs outside the batcher, so the batches carried the computing call's 3 texts and nothing else.
        Assert.Contains("embcache_batch_texts_sum{model=\"all-MiniLM-L6-v2\"} 3", metrics);
        var batches = Regex.Match(metrics, "embcache_batch_texts_count\\{model=\"all-MiniLM-L6-v2\"\\} ([1-3])\n").Groups[1].Value;
        Assert.NotEmpty(batches);
        Assert.Matches("embcache_batch_tokens_sum\\{model=\"all-MiniLM-L6-v2\"\\} [1-9]", metrics);
        Assert.Contains($"embcache_batch_padding_ratio_count{{model=\"all-MiniLM-L6-v2\"}} {batches}\n", metrics);
        Assert.Contains($"embcache_batch_seconds_count{{model=\"all-MiniLM-L6-v2\"}} {batches}\n", metrics);
        Assert.Matches("embcache_disk_bytes\\{model=\"all-MiniLM-L6-v2\"\\} [1-9]", metrics);
    }
}
