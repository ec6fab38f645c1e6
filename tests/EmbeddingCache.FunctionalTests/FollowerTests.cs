using System.Diagnostics;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Testing;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// A writer and a read-only follower (<c>--follow</c>) on one artifacts root, each its own process on 127.0.0.1: the
/// follower serves what the writer commits within the stated bound (PublishIntervalMs + PollIntervalMs + one poll),
/// byte for byte, swaps invalidations in whole, keeps serving after the writer is killed, refuses writes naming the
/// writer, and never creates or changes a file under the root.
/// </summary>
public sealed class FollowerTests(ITestOutputHelper output) : ServerTest(output)
{
    private const int PublishIntervalMs = 50;
    private const int PollIntervalMs = 100;
    private const int Dims = 8;
    private const string StoreOnlyModel = "followed-vectors";

    /// <summary>
    /// The bound FORMAT.md states, with an allowance for one poll and for this test's own checking (a Get every 10 ms
    /// from a loaded 2-core machine): a follower that missed a publish would lag by the writer's 10 s checkpoint.
    /// </summary>
    private static readonly TimeSpan Bound = TimeSpan.FromMilliseconds(PublishIntervalMs + PollIntervalMs + 750);

    [Fact]
    public async Task A_follower_serves_the_writers_rows_within_the_bound_swaps_invalidations_in_and_refuses_writes()
    {
        var writer = await StartServerAsync(
            $"--EmbeddingCache:Storage:PublishIntervalMs={PublishIntervalMs}", "--EmbeddingCache:Storage:InvalidatedRetentionSeconds=3");
        var follower = await StartServerAsync(
            "--follow", $"--EmbeddingCache:Follow:WriterAddress={writer.Address}", $"--EmbeddingCache:Follow:PollIntervalMs={PollIntervalMs}");

        // Rows Put on the writer, in rounds: each round is served by the follower, byte for byte, within the bound.
        var random = new Random(17);
        var delays = new List<TimeSpan>();
        long lastSequence = -1;
        long generation = 0;
        for (int round = 0; round < 12; round++)
        {
            var ids = Enumerable.Range(0, 10).Select(i => $"r{round}-{i}").ToArray();
            var rows = Wire.RandomRows(random, ids.Length, Dims);
            using var put = writer.Client.PutAsync(new PutRequest { Model = StoreOnlyModel, Kind = Kind.Document, Ids = { ids }, Vectors = Wire.Pack(rows, Dims) });
            await put.ResponseAsync;
            var acknowledged = Stopwatch.StartNew();
            var writerPosition = Position(put.GetTrailers());
            GetResponse? served = null;
            await Wait.UntilAsync(
                async () =>
                {
                    served = await TryGetAsync(follower, ids);
                    return served?.FoundCount == (uint)ids.Length;
                },
                $"the follower to serve round {round}");
            delays.Add(acknowledged.Elapsed);
            Assert.Equal(rows, Wire.Floats(served!.Vectors));

            // The follower's trailers: the writer's generation, a sequence that grows and reaches the writer's.
            using var get = follower.Client.GetAsync(new GetRequest { Model = StoreOnlyModel, Kind = Kind.Document, Ids = { ids } });
            await get.ResponseAsync;
            var followerPosition = Position(get.GetTrailers());
            Assert.Equal(writerPosition.Generation["document"], followerPosition.Generation["document"]);
            Assert.True(followerPosition.Sequence["document"] >= writerPosition.Sequence["document"]);
            Assert.True(followerPosition.Sequence["document"] > lastSequence);
            lastSequence = followerPosition.Sequence["document"];
            generation = followerPosition.Generation["document"];
        }

        delays.Sort();
        Output.WriteLine($"Put acknowledged on the writer -> served by the follower: p50 {delays[delays.Count / 2].TotalMilliseconds:0} ms, " +
                         $"max {delays[^1].TotalMilliseconds:0} ms (bound {PublishIntervalMs} + {PollIntervalMs} ms + one poll)");
        Assert.True(delays[^1] <= Bound, $"the slowest round took {delays[^1].TotalMilliseconds:0} ms, over {Bound.TotalMilliseconds:0} ms");

        // Texts: the writer computes them; the follower serves them from the cache and refuses to compute new ones.
        var texts = Wire.Texts(seed: 21, count: 6);
        var computed = await writer.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { texts } });
        var documents = Wire.Texts(seed: 22, count: 3);
        string[] documentIds = ["d0", "d1", "d2"];
        await writer.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { documents }, Ids = { documentIds } });
        var writerScore = await writer.Client.ScoreAsync(new ScoreRequest { Model = Wire.MiniLM, Queries = { texts[0] }, DocumentIds = { documentIds } });
        EmbedResponse? hits = null;
        await Wait.UntilAsync(
            async () =>
            {
                hits = await TryEmbedCachedAsync(follower, texts);
                return hits?.CachedCount == (uint)texts.Length;
            },
            "the follower to serve the computed texts");
        Assert.Equal(computed.Vectors.Data, hits!.Vectors.Data);
        await Wait.UntilAsync(
            async () => (await follower.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { documentIds } })).FoundCount == 3,
            "the follower to serve the documents stored under ids");
        var score = await follower.Client.ScoreAsync(new ScoreRequest { Model = Wire.MiniLM, Queries = { texts[0] }, DocumentIds = { documentIds } });
        Assert.Equal(writerScore.Scores, score.Scores);

        // Every write sent to the follower is refused, naming the writer.
        await AssertRefusedAsync(writer, () => follower.Client.PutAsync(
            new PutRequest { Model = StoreOnlyModel, Kind = Kind.Document, Ids = { "x" }, Vectors = Wire.Pack(new float[Dims], Dims) }).ResponseAsync);
        await AssertRefusedAsync(writer, () => follower.Client.InvalidateAsync(new InvalidateRequest { Model = StoreOnlyModel }).ResponseAsync);
        await AssertRefusedAsync(writer, () => follower.Client.EmbedAsync(
            new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { "a text nobody embedded" } }).ResponseAsync);
        await AssertRefusedAsync(writer, () => follower.Client.ScoreAsync(
            new ScoreRequest { Model = Wire.MiniLM, Queries = { texts[0] }, DocumentTexts = { "another text nobody embedded" } }).ResponseAsync);
        var cacheOnly = await follower.Client.EmbedAsync(
            new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { "a text nobody embedded" }, CacheOnly = true });
        Assert.Equal(1u, cacheOnly.MissingCount);

        // Invalidate on the writer while the follower is read: no read fails, and after the bound no old row is served.
        var oldIds = Enumerable.Range(0, 12).SelectMany(round => Enumerable.Range(0, 10).Select(i => $"r{round}-{i}")).ToArray();
        using var stop = new CancellationTokenSource();
        var readErrors = new List<Exception>();
        int reads = 0;
        var reader = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    var got = await follower.Client.GetAsync(new GetRequest { Model = StoreOnlyModel, Kind = Kind.Document, Ids = { oldIds } });
                    Assert.True(got.FoundCount is 0 or 120, $"a read saw {got.FoundCount} of 120 rows: part of a generation");
                    Interlocked.Increment(ref reads);
                }
                catch (Exception e)
                {
                    lock (readErrors) readErrors.Add(e);
                }
            }
        });
        while (Volatile.Read(ref reads) < 5) await Task.Yield();
        // The retention runs from the folder's rename, before the acknowledgement; the staleness bound from the acknowledgement.
        var sent = Stopwatch.StartNew();
        using var invalidate = writer.Client.InvalidateAsync(new InvalidateRequest { Model = StoreOnlyModel, Kind = Kind.Document });
        await invalidate.ResponseAsync;
        var invalidated = Stopwatch.StartNew();
        long newGeneration = Position(invalidate.GetTrailers()).Generation["document"];
        Assert.NotEqual(generation, newGeneration);
        string modelDirectory = Path.Combine(Artifacts.Path, "embeddings", StoreOnlyModel);
        string trash = Assert.Single(Directory.GetDirectories(modelDirectory, ".trash-document-*")); // kept for the follower

        await Wait.UntilAsync(
            async () => (await TryGetAsync(follower, oldIds))?.FoundCount == 0, "the follower to stop serving the invalidated rows");
        Output.WriteLine($"Invalidate acknowledged -> old rows gone on the follower: {invalidated.ElapsedMilliseconds} ms");
        Assert.True(invalidated.Elapsed <= Bound, $"old rows were served {invalidated.ElapsedMilliseconds} ms after the invalidation");
        using (var after = follower.Client.GetAsync(new GetRequest { Model = StoreOnlyModel, Kind = Kind.Document, Ids = { oldIds[0] } }))
        {
            await after.ResponseAsync;
            Assert.Equal(newGeneration, Position(after.GetTrailers()).Generation["document"]);
            Assert.Equal(0, Position(after.GetTrailers()).Sequence["document"]);
        }

        int readsAfter = Volatile.Read(ref reads);
        while (Volatile.Read(ref reads) < readsAfter + 5) await Task.Yield();
        await stop.CancelAsync();
        await reader;
        Assert.Empty(readErrors);

        // The invalidated generation's files outlive the retention only briefly.
        await Wait.UntilAsync(() => !Directory.Exists(trash), "the writer to delete the invalidated generation after its 3 s retention");
        Assert.True(sent.Elapsed >= TimeSpan.FromSeconds(3), $"deleted {sent.ElapsedMilliseconds} ms after the Invalidate was sent");
        Assert.Empty(follower.ErrorLines());
    }

    [Fact]
    public async Task After_the_writer_is_killed_the_follower_serves_every_acknowledged_row_and_never_writes_a_file()
    {
        // A zero interval publishes every commit before it is acknowledged: every acknowledged row must be served.
        var writer = await StartServerAsync("--EmbeddingCache:Storage:PublishIntervalMs=0");
        var follower = await StartServerAsync("--follow", $"--EmbeddingCache:Follow:PollIntervalMs={PollIntervalMs}");

        var acknowledged = new List<(string Id, float[] Row)>();
        var random = new Random(23);
        using var writing = new CancellationTokenSource();
        var puts = Task.Run(async () =>
        {
            for (int batch = 0; !writing.IsCancellationRequested; batch++)
            {
                var ids = Enumerable.Range(0, 20).Select(i => $"k{batch}-{i}").ToArray();
                var rows = Wire.RandomRows(random, ids.Length, Dims);
                try
                {
                    await writer.Client.PutAsync(new PutRequest { Model = StoreOnlyModel, Kind = Kind.Query, Ids = { ids }, Vectors = Wire.Pack(rows, Dims) });
                }
                catch (RpcException)
                {
                    return; // the writer was killed: this batch was not acknowledged
                }

                lock (acknowledged)
                {
                    acknowledged.AddRange(ids.Select((id, i) => (id, rows.AsSpan(i * Dims, Dims).ToArray())));
                }
            }
        });
        await Wait.UntilAsync(() => { lock (acknowledged) return acknowledged.Count >= 400; }, "the writer to acknowledge 400 rows");
        await writer.KillAsync();
        await puts;

        var before = Listing(Artifacts.Path);
        var ids = acknowledged.Select(row => row.Id).ToArray();
        GetResponse? served = null;
        await Wait.UntilAsync(
            async () =>
            {
                served = await TryGetAsync(follower, ids, Kind.Query);
                return served?.FoundCount == (uint)ids.Length;
            },
            $"the follower to serve all {ids.Length} acknowledged rows");
        Assert.Equal(acknowledged.SelectMany(row => row.Row).ToArray(), Wire.Floats(served!.Vectors));

        // A few more polls over a root nobody writes: the follower changes nothing (sizes, times, names) and holds no lock.
        var polled = Stopwatch.StartNew();
        while (polled.Elapsed < TimeSpan.FromMilliseconds(5 * PollIntervalMs))
        {
            Assert.Equal((uint)ids.Length, (await TryGetAsync(follower, ids, Kind.Query))!.FoundCount);
        }

        Assert.Equal(before, Listing(Artifacts.Path));
        var restarted = await StartServerAsync();
        var afterRestart = await restarted.Client.GetAsync(new GetRequest { Model = StoreOnlyModel, Kind = Kind.Query, Ids = { ids } });
        Assert.Equal((uint)ids.Length, afterRestart.FoundCount);
        Assert.Empty(follower.ErrorLines());
    }

    private static async Task<GetResponse?> TryGetAsync(ServerProcess server, string[] ids, Kind kind = Kind.Document)
    {
        try
        {
            return await server.Client.GetAsync(new GetRequest { Model = StoreOnlyModel, Kind = kind, Ids = { ids } });
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null; // the follower has not seen the model's cache yet
        }
    }

    private static async Task<EmbedResponse?> TryEmbedCachedAsync(ServerProcess server, string[] texts)
    {
        try
        {
            return await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { texts }, CacheOnly = true });
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
    }

    private static async Task AssertRefusedAsync(ServerProcess writer, Func<Task> write)
    {
        var refusal = await Assert.ThrowsAsync<RpcException>(write);
        Assert.Equal(StatusCode.FailedPrecondition, refusal.StatusCode);
        Assert.StartsWith("this server is a read-only follower of ", refusal.Status.Detail);
        Assert.Contains($"send writes to the writer at {writer.Address}", refusal.Status.Detail);
    }

    /// <summary>The embcache-generation and embcache-sequence trailers, by kind.</summary>
    private static (Dictionary<string, long> Generation, Dictionary<string, long> Sequence) Position(Metadata trailers) =>
        (ByKind(trailers.GetValue("embcache-generation")), ByKind(trailers.GetValue("embcache-sequence")));

    private static Dictionary<string, long> ByKind(string? value)
    {
        Assert.NotNull(value);
        return value.Split(',').Select(pair => pair.Split('=')).ToDictionary(pair => pair[0], pair => long.Parse(pair[1], System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>Every file and folder under the root with its size and modification time.</summary>
    private static List<string> Listing(string root) =>
        [.. Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories)
            .Order(StringComparer.Ordinal)
            .Select(path => File.Exists(path)
                ? $"{Path.GetRelativePath(root, path)} {new FileInfo(path).Length} {File.GetLastWriteTimeUtc(path).Ticks}"
                : $"{Path.GetRelativePath(root, path)}/ {Directory.GetLastWriteTimeUtc(path).Ticks}")];
}
