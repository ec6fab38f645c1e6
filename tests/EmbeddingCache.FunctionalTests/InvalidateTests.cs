using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Invalidate drops exactly one model's cache (or one kind of it), atomically, under concurrent readers.</summary>
[Collection(SharedServerCollection.Name)]
public sealed class InvalidateTests(InProcessServer shared, ITestOutputHelper output) : SharedServerTest(shared, output)
{
    [Fact]
    public async Task Invalidate_drops_one_kind_while_readers_run_and_leaves_the_rest()
    {
        var server = await StartServerAsync();
        var documents = Wire.Texts(seed: 8, count: 20);
        var queries = Wire.Texts(seed: 9, count: 5, prefix: "query");
        await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { documents } });
        await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { queries } });
        var other = Wire.RandomRows(new Random(10), 3, 4);
        await server.Client.PutAsync(new PutRequest { Model = "other", Kind = Kind.Document, Ids = { "a", "b", "c" }, Vectors = Wire.Pack(other, 4) });

        using var stop = new CancellationTokenSource();
        var readerErrors = new List<Exception>();
        int reads = 0;
        var readers = Enumerable.Range(0, 3).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    var got = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { documents } });
                    Assert.All(got.Sources, s => Assert.True(s is RowSource.Cached or RowSource.Missing));
                    Interlocked.Increment(ref reads);
                }
                catch (Exception e)
                {
                    lock (readerErrors) readerErrors.Add(e);
                }
            }
        })).ToArray();

        while (Volatile.Read(ref reads) < 20) await Task.Yield();
        var dropped = await server.Client.InvalidateAsync(new InvalidateRequest { Model = Wire.MiniLM, Kind = Kind.Document });
        // Every read that starts after Invalidate returned finds nothing.
        var after = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { documents } });
        int readsAtInvalidate = Volatile.Read(ref reads);
        while (Volatile.Read(ref reads) < readsAtInvalidate + 20) await Task.Yield();
        await stop.CancelAsync();
        await Task.WhenAll(readers);

        Assert.Empty(readerErrors);
        Assert.Equal(20ul, dropped.RowsRemoved);
        Assert.True(dropped.BytesRemoved >= 20ul * 384 * 4);
        Assert.All(after.Sources, s => Assert.Equal(RowSource.Missing, s));
        var queryRows = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { queries } });
        Assert.All(queryRows.Sources, s => Assert.Equal(RowSource.Cached, s));
        var otherRows = await server.Client.GetAsync(new GetRequest { Model = "other", Kind = Kind.Document, Ids = { "a", "b", "c" } });
        Assert.Equal(other, Wire.Floats(otherRows.Vectors));

        var recomputed = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { documents } });
        Assert.All(recomputed.Sources, s => Assert.Equal(RowSource.Computed, s));

        var all = await server.Client.InvalidateAsync(new InvalidateRequest { Model = Wire.MiniLM });
        Assert.Equal(25ul, all.RowsRemoved);
        var none = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { queries } });
        Assert.All(none.Sources, s => Assert.Equal(RowSource.Missing, s));
    }

    [Fact]
    public async Task Vectors_computed_across_an_Invalidate_are_not_written_into_the_new_generation()
    {
        var server = await StartServerAsync();
        int raced = 0;
        for (int attempt = 0; attempt < 20 && raced == 0; attempt++)
        {
            await server.Client.InvalidateAsync(new InvalidateRequest { Model = Wire.MiniLM, Kind = Kind.Document });
            var texts = Wire.Texts(seed: 100 + attempt, count: 48);
            int skippedBefore = WriteBacksSkipped(server);
            var embedding = server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } }).ResponseAsync;
            var invalidated = await server.Client.InvalidateAsync(new InvalidateRequest { Model = Wire.MiniLM, Kind = Kind.Document });
            var embedded = await embedding;
            Assert.All(embedded.Sources, s => Assert.Equal(RowSource.Computed, s));
            var got = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });

            bool computedAcross = WriteBacksSkipped(server) > skippedBefore;
            bool writtenBefore = invalidated.RowsRemoved == 48;
            if (computedAcross || writtenBefore)
            {
                // Made before the Invalidate: never served after it.
                Assert.All(got.Sources, s => Assert.Equal(RowSource.Missing, s));
            }
            else
            {
                // The Embed looked up after the Invalidate: its rows belong to the new generation.
                Assert.All(got.Sources, s => Assert.Equal(RowSource.Cached, s));
            }
            raced += computedAcross ? 1 : 0;
            Output.WriteLine($"attempt {attempt}: removed {invalidated.RowsRemoved} rows, computed across: {computedAcross}");
        }
        Assert.True(raced > 0, "no Embed was computing while Invalidate ran in 20 attempts");
    }

    private static int WriteBacksSkipped(ServerProcess server) =>
        server.Log.Split('\n').Count(line => line.Contains("were not written back", StringComparison.Ordinal));

    [Fact]
    public async Task Invalidate_of_an_unknown_model_is_not_found()
    {
        var server = UseSharedServer();
        var error = await Assert.ThrowsAsync<RpcException>(async () => await server.Client.InvalidateAsync(new InvalidateRequest { Model = "no-such-model" }));
        Assert.Equal(StatusCode.NotFound, error.StatusCode);
    }
}
