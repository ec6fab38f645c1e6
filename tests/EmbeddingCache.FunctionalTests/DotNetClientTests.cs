using EmbeddingCache.Client;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>The .NET client library against the real server: the same verbs as the Python client.</summary>
public sealed class DotNetClientTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task Client_embeds_puts_gets_scores_lists_and_invalidates()
    {
        var server = await StartServerAsync();
        using var client = new EmbeddingCacheClient(server.Address);
        var texts = Wire.Texts(seed: 14, count: 5);

        var computed = await client.EmbedAsync(Wire.MiniLM, texts);
        Assert.All(computed.Sources, s => Assert.Equal(RowSource.Computed, s));
        Assert.Equal(5, computed.Vectors.Count);
        Assert.Equal(384, computed.Vectors.Dims);
        var cached = await client.EmbedAsync(Wire.MiniLM, texts);
        Assert.True(computed.Vectors.Floats.SequenceEqual(cached.Vectors.Floats));
        var half = await client.EmbedAsync(Wire.MiniLM, texts, dtype: DType.Float16);
        Assert.Equal((Half)computed.Vectors.Row(2)[7], half.Vectors.Halves[2 * 384 + 7]);

        var rows = Wire.RandomRows(new Random(15), 3, 384);
        Assert.Equal(3, await client.PutAsync(Wire.MiniLM, rows, 384, ids: ["p1", "p2", "p3"]));
        var got = await client.GetByIdsAsync(Wire.MiniLM, ["p2", "nope"]);
        Assert.Equal([RowSource.Cached, RowSource.Missing], got.Sources);
        Assert.True(got.Vectors.Row(0).SequenceEqual(rows.AsSpan(384, 384)));

        var scores = await client.ScoreAsync(Wire.MiniLM, ["dense retrieval"], documentIds: ["p1", "p2", "p3"], topK: 2);
        Assert.Equal(3u, scores.DocumentCount);
        Assert.Equal(2, scores.Top[0].Indexes.Count);

        var models = await client.ListModelsAsync();
        Assert.Contains(models, m => m.Name == Wire.MiniLM && m.DocumentRows == 8);
        var dropped = await client.InvalidateAsync(Wire.MiniLM, Kind.Document);
        Assert.Equal(8ul, dropped.RowsRemoved);

        var error = await Assert.ThrowsAsync<RpcException>(() => client.EmbedAsync("no-such-model", ["x"]));
        Assert.Equal(StatusCode.NotFound, error.StatusCode);
    }
}
