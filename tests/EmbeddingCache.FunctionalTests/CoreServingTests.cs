using System.Text.Json;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Reflection.V1Alpha;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>The working core end to end: compute, cache, serve exact bytes, survive a restart.</summary>
[Collection(SharedServerCollection.Name)]
public sealed class CoreServingTests(InProcessServer shared, ITestOutputHelper output) : SharedServerTest(shared, output)
{
    [Fact]
    public async Task Embed_computes_then_serves_identical_bytes_from_cache_across_restart()
    {
        var server = await StartServerAsync();
        var texts = Wire.Texts(seed: 1, count: 24);
        var request = new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } };

        using var firstCall = server.Client.EmbedAsync(request);
        var first = await firstCall;
        Assert.All(first.Sources, s => Assert.Equal(RowSource.Computed, s));
        // The trailers say where the time went: a computed call spent it in ONNX Runtime.
        var trailers = firstCall.GetTrailers();
        foreach (var stage in new[] { "lookup", "tokenize", "queue", "inference", "write" })
        {
            Assert.NotNull(trailers.GetValue($"embcache-{stage}-us"));
        }
        Assert.True(long.Parse(trailers.GetValue("embcache-inference-us")!) > 0);
        Assert.Equal(24u, first.ComputedCount);
        Assert.Equal(384u, first.Vectors.Dims);
        Assert.Equal(24u, first.Vectors.Count);
        Assert.False(string.IsNullOrEmpty(first.Fingerprint));

        var second = await server.Client.EmbedAsync(request);
        Assert.All(second.Sources, s => Assert.Equal(RowSource.Cached, s));
        Assert.Equal(first.Vectors.Data, second.Vectors.Data);

        await server.StopAsync();
        var restarted = await StartServerAsync();
        var third = await restarted.Client.EmbedAsync(request);
        Assert.All(third.Sources, s => Assert.Equal(RowSource.Cached, s));
        Assert.Equal(first.Vectors.Data, third.Vectors.Data);
        Assert.Equal(first.Fingerprint, third.Fingerprint);
        Assert.Empty(restarted.ErrorLines());
    }

    [Fact]
    public async Task Mixed_request_with_repeats_computes_each_distinct_miss_once_in_input_order()
    {
        var server = UseSharedServer();
        var cached = Wire.Texts(seed: 2, count: 3);
        var fresh = Wire.Texts(seed: 3, count: 2);
        var warm = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { cached } });
        long rowsBefore = await QueryRowsAsync(server.Client);

        string[] mixed = [fresh[0], cached[1], fresh[0], fresh[1], cached[1], cached[0], fresh[1]];
        var reply = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { mixed } });

        Assert.Equal(
            [RowSource.Computed, RowSource.Cached, RowSource.Computed, RowSource.Computed, RowSource.Cached, RowSource.Cached, RowSource.Computed],
            reply.Sources);
        Assert.Equal(2, await QueryRowsAsync(server.Client) - rowsBefore);
        Assert.Equal(Wire.Row(warm.Vectors, 1), Wire.Row(reply.Vectors, 1));
        Assert.Equal(Wire.Row(warm.Vectors, 0), Wire.Row(reply.Vectors, 5));
        Assert.Equal(Wire.Row(reply.Vectors, 0), Wire.Row(reply.Vectors, 2));
        Assert.Equal(Wire.Row(reply.Vectors, 3), Wire.Row(reply.Vectors, 6));
        Assert.NotEqual(Wire.Row(reply.Vectors, 0), Wire.Row(reply.Vectors, 3));

        // Each row equals what the text gets alone: batching and order never change a vector.
        var alone = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { fresh[1] } });
        Assert.Equal(Wire.Row(alone.Vectors, 0), Wire.Row(reply.Vectors, 3));
    }

    [Fact]
    public async Task Put_then_Get_by_ids_returns_the_same_bytes_and_unknown_ids_are_missing()
    {
        var server = UseSharedServer();
        var random = new Random(4);
        var vectors = Wire.RandomRows(random, rows: 5, dims: 8);
        string[] ids = ["d1", "d2", "d3", "d4", "d5"];
        var put = await server.Client.PutAsync(new PutRequest
        {
            Model = "gpu-encoder",
            Kind = Kind.Document,
            Ids = { ids },
            Vectors = Wire.Pack(vectors, 8),
        });
        Assert.Equal(5u, put.Stored);

        var got = await server.Client.GetAsync(new GetRequest
        {
            Model = "gpu-encoder",
            Kind = Kind.Document,
            Ids = { "d3", "nope", "d1", "d5" },
        });
        Assert.Equal([RowSource.Cached, RowSource.Missing, RowSource.Cached, RowSource.Cached], got.Sources);
        var floats = Wire.Floats(got.Vectors);
        Assert.Equal(vectors.AsSpan(2 * 8, 8).ToArray(), floats.AsSpan(0, 8).ToArray());
        Assert.All(floats.AsSpan(8, 8).ToArray(), f => Assert.Equal(0f, f));
        Assert.Equal(vectors.AsSpan(0, 8).ToArray(), floats.AsSpan(16, 8).ToArray());
        Assert.Equal(vectors.AsSpan(4 * 8, 8).ToArray(), floats.AsSpan(24, 8).ToArray());

        // The newest write for an id wins, and a store-only model cannot compute.
        var newer = Wire.RandomRows(random, rows: 1, dims: 8);
        await server.Client.PutAsync(new PutRequest { Model = "gpu-encoder", Kind = Kind.Document, Ids = { "d3" }, Vectors = Wire.Pack(newer, 8) });
        var again = await server.Client.GetAsync(new GetRequest { Model = "gpu-encoder", Kind = Kind.Document, Ids = { "d3" } });
        Assert.Equal(newer, Wire.Floats(again.Vectors));
        var models = await server.Client.ListModelsAsync(new ListModelsRequest());
        var storeOnly = Assert.Single(models.Models, m => m.Name == "gpu-encoder");
        Assert.False(storeOnly.CanCompute);
        Assert.Equal(8u, storeOnly.Dims);
        Assert.Equal(6ul, storeOnly.DocumentRows);
    }

    [Fact]
    public async Task A_put_far_larger_than_the_stream_window_arrives_whole()
    {
        // The server opens a 64 KiB HTTP/2 window (so refused oversize messages stay cheap): a 15 MiB Put must still flow.
        var server = UseSharedServer();
        const int rows = 10_000, dims = 384;
        var vectors = Wire.RandomRows(new Random(16), rows, dims);
        var ids = Enumerable.Range(0, rows).Select(i => $"passage-{i}").ToArray();
        var put = await server.Client.PutAsync(new PutRequest { Model = "gpu-bulk", Kind = Kind.Document, Ids = { ids }, Vectors = Wire.Pack(vectors, dims) });
        Assert.Equal((uint)rows, put.Stored);

        var got = await server.Client.GetAsync(new GetRequest { Model = "gpu-bulk", Kind = Kind.Document, Ids = { ids[0], ids[rows / 2], ids[^1] } });
        var floats = Wire.Floats(got.Vectors);
        Assert.Equal(vectors.AsSpan(0, dims).ToArray(), floats[..dims]);
        Assert.Equal(vectors.AsSpan(rows / 2 * dims, dims).ToArray(), floats[dims..(2 * dims)]);
        Assert.Equal(vectors.AsSpan((rows - 1) * dims, dims).ToArray(), floats[(2 * dims)..]);
    }

    [Fact]
    public async Task Vectors_over_grpc_match_the_reference_implementation()
    {
        var server = UseSharedServer();
        var texts = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(AppContext.BaseDirectory, "reference", "texts.json")))
            .RootElement.EnumerateArray().Select(t => t.GetProperty("text").GetString()!).ToArray();
        var reference = NpyFile.ReadFloat32(Path.Combine(AppContext.BaseDirectory, "reference", $"{Wire.MiniLM}.document.npy"));

        var reply = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
        var got = Wire.Floats(reply.Vectors);
        double worst = 1;
        for (int i = 0; i < texts.Length; i++)
        {
            double cosine = Wire.Cosine(got.AsSpan(i * 384, 384), reference.AsSpan(i * 384, 384));
            worst = Math.Min(worst, cosine);
            Assert.True(cosine >= 0.9999, $"text {i} ({texts[i][..Math.Min(40, texts[i].Length)]}…): cosine {cosine}");
        }
        Output.WriteLine($"min cosine over {texts.Length} reference texts: {worst:F7}");
    }

    [Fact]
    public async Task Float16_replies_carry_the_same_vectors_at_half_the_bytes()
    {
        var server = UseSharedServer();
        var texts = Wire.Texts(seed: 5, count: 4);
        var full = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
        var half = await server.Client.EmbedAsync(new EmbedRequest
        {
            Model = Wire.MiniLM,
            Kind = Kind.Document,
            Texts = { texts },
            Dtype = DType.Float16,
        });
        Assert.Equal(DType.Float16, half.Vectors.Dtype);
        Assert.Equal(full.Vectors.Data.Length / 2, half.Vectors.Data.Length);
        var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(half.Vectors.Data.Span);
        var floats = Wire.Floats(full.Vectors);
        for (int i = 0; i < floats.Length; i++) Assert.Equal((float)(Half)floats[i], (float)halves[i]);
    }

    [Fact]
    public async Task Health_reflection_and_model_list_answer()
    {
        var server = UseSharedServer();
        var health = new Grpc.Health.V1.Health.HealthClient(server.Channel);
        var status = await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, status.Status);

        var reflection = new ServerReflection.ServerReflectionClient(server.Channel);
        using var call = reflection.ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Contains(call.ResponseStream.Current.ListServicesResponse.Service, s => s.Name == "embeddingcache.v1.EmbeddingCache");

        var models = await server.Client.ListModelsAsync(new ListModelsRequest());
        var miniLm = Assert.Single(models.Models, m => m.Name == Wire.MiniLM);
        Assert.True(miniLm.CanCompute);
        Assert.Equal(384u, miniLm.Dims);
        Assert.False(string.IsNullOrEmpty(miniLm.Fingerprint));
        var arctic = Assert.Single(models.Models, m => m.Name == "snowflake-arctic-embed-xs");
        Assert.True(arctic.CanCompute);
        Assert.Equal(384u, arctic.Dims);
        Assert.True(File.Exists(Path.Combine(server.ArtifactsDirectory, "models", Wire.MiniLM, "model.onnx")));
        Assert.True(File.Exists(Path.Combine(server.ArtifactsDirectory, "models", Wire.MiniLM, "manifest.json")));
    }

    private static async Task<long> QueryRowsAsync(Protocol.V1.EmbeddingCache.EmbeddingCacheClient client)
    {
        var models = await client.ListModelsAsync(new ListModelsRequest());
        return (long)models.Models.Single(m => m.Name == Wire.MiniLM).QueryRows;
    }
}
