using System.Collections.Concurrent;
using System.Diagnostics;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;
using CacheClient = EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient;
using RoutingClient = EmbeddingCache.Client.EmbeddingCacheClient;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// The repository's nginx file (src/EmbeddingCache.Server/deploy/nginx-embcache.conf) in front of real servers, all on
/// 127.0.0.1: a writer and two followers of its root. Writes reach the model's writer by the embcache-model header every
/// client sends, reads go to the followers (byte-identical, within the staleness bound, retried on the other follower
/// when one is killed), a write sent straight to a follower is refused, and a 77 MB Put passes.
/// </summary>
public sealed class FollowerRoutingTests(ITestOutputHelper output) : ServerTest(output)
{
    private const string GpuCorpus = "gpu-corpus"; // the model the file routes to its own writer
    private const string StoreOnly = "routed-store";
    private const int Dims = 8;
    // The followers' stated staleness bound (FORMAT.md): PublishIntervalMs (50) + PollIntervalMs (100), plus one poll.
    private const int BoundMs = 150;
    // One poll (after an Invalidate: opening the new generation) and this test's own look (a Get to each follower every
    // few ms), on a 2-core machine shared with other builds and test runs, where a ready thread can wait hundreds of
    // milliseconds for a core. Rows published only at the writer's checkpoints would be seconds late and fail this.
    private const int MarginMs = 1350;
    private readonly List<NginxProcess> proxies = [];

    [Fact]
    public async Task Every_client_sends_the_model_header_and_nginx_sends_each_models_writes_to_its_writer()
    {
        var writer = await StartServerAsync();
        using var gpuRoot = new TempDirectory();
        var gpuWriter = await StartServerOnAsync(gpuRoot.Path);
        var nginx = await StartNginxAsync(writer, gpuWriter, writer, writer);
        using var client = new RoutingClient(nginx.Address);

        var rows = Wire.RandomRows(new Random(1), 3, Dims);
        Assert.Equal(3, await client.PutAsync(GpuCorpus, rows, Dims, ids: ["g0", "g1", "g2"]));
        Assert.Equal(3, await client.PutAsync(StoreOnly, rows, Dims, ids: ["s0", "s1", "s2"]));
        var back = await client.GetByIdsAsync(GpuCorpus, ["g0", "g1", "g2"]);
        Assert.Equal(rows, back.Vectors.Floats.ToArray());
        // The generated client, as the embcache verbs use it, carries the header too.
        await client.Rpc.PutAsync(new PutRequest { Model = GpuCorpus, Kind = Kind.Document, Ids = { "g3" }, Vectors = Wire.Pack(rows[..Dims], Dims) });

        // The server ignores the header: a call whose header names another model is served by its message's model.
        await writer.Client.PutAsync(
            new PutRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { "s3" }, Vectors = Wire.Pack(rows[..Dims], Dims) },
            headers: new Metadata { { "embcache-model", GpuCorpus } });

        Assert.Equal(4ul, (await RowsAsync(gpuWriter, GpuCorpus))?.DocumentRows);
        Assert.Null(await RowsAsync(writer, GpuCorpus));
        Assert.Equal(4ul, (await RowsAsync(writer, StoreOnly))?.DocumentRows);
        Assert.Null(await RowsAsync(gpuWriter, StoreOnly));

        // The embcache verbs through nginx: warm streams (EmbedStream), invalidate, models.
        string corpus = Path.Combine(Artifacts.Path, "..", Path.GetFileName(Artifacts.Path) + "-corpus.jsonl");
        await File.WriteAllLinesAsync(corpus, ["""{"_id": "c1", "text": "warmed through nginx"}""", """{"_id": "c2", "text": "a second passage"}"""]);
        try
        {
            await AssertVerbAsync("warm", Wire.MiniLM, corpus, "--server", nginx.Address);
        }
        finally
        {
            File.Delete(corpus);
        }
        await AssertVerbAsync("invalidate", StoreOnly, "--server", nginx.Address);
        await AssertVerbAsync("models", "--server", nginx.Address);
        Assert.Equal(0ul, (await RowsAsync(writer, StoreOnly))?.DocumentRows);

        // The Python client, sync and asyncio.
        Output.WriteLine(await RunPythonAsync("routed_client.py", nginx.HostAndPort, GpuCorpus, Wire.MiniLM));

        string writerPort = Port(writer), gpuPort = Port(gpuWriter);
        var calls = await CallsSeenAsync(nginx, minimum: 14);
        foreach (var call in calls) Output.WriteLine($"{call.Method} model={call.Model} upstream={call.Upstream} grpc={call.GrpcStatus}");
        Assert.All(calls, call => Assert.Equal("0", call.GrpcStatus));
        Assert.All(calls.Where(c => c.Method != "ListModels"), call => Assert.NotEqual("-", call.Model));
        Assert.All(calls.Where(c => c.Model == GpuCorpus), call => Assert.EndsWith(gpuPort, call.Upstream, StringComparison.Ordinal));
        Assert.All(calls.Where(c => c.Model != GpuCorpus), call => Assert.EndsWith(writerPort, call.Upstream, StringComparison.Ordinal));
        Assert.Equal(
            ["Embed", "EmbedStream", "Get", "Invalidate", "ListModels", "Put"],
            calls.Select(c => c.Method).Distinct().Order(StringComparer.Ordinal));
    }


    [Fact]
    public async Task Reads_through_nginx_under_load_are_byte_identical_and_puts_reach_both_followers_within_the_bound()
    {
        var cluster = await StartClusterAsync();
        using var client = new RoutingClient(cluster.Nginx.Address);
        var ids = Enumerable.Range(0, 64).Select(i => $"base-{i}").ToArray();
        var rows = Wire.RandomRows(new Random(3), ids.Length, Dims);
        await client.PutAsync(StoreOnly, rows, Dims, ids: ids);
        await DelaysUntilServedAsync(cluster, StoreOnly, ids, rows);
        // Score from cached vectors on the followers: the writer's own scores of the same vectors, bit for bit.
        string[] queries = ["what do followers serve?", "how stale can a read be?"];
        await client.EmbedAsync(Wire.MiniLM, queries, Kind.Query);
        var documentIds = Enumerable.Range(0, 16).Select(i => $"doc-{i}").ToArray();
        await client.PutAsync(Wire.MiniLM, Wire.RandomRows(new Random(4), documentIds.Length, 384), 384, ids: documentIds);
        var expectedScores = (await cluster.Writer.Client.ScoreAsync(new ScoreRequest { Model = Wire.MiniLM, Queries = { queries }, DocumentIds = { documentIds } })).Scores;
        await Testing.Wait.UntilAsync(async () => await AllFollowersAsync(cluster, async follower =>
            (await follower.Client.ScoreAsync(new ScoreRequest { Model = Wire.MiniLM, Queries = { queries }, DocumentIds = { documentIds } })).Scores.Equals(expectedScores)),
            "both followers to score the cached queries and documents");

        var delays = new List<double>();
        await using (var load = ReadLoad.Start(
            [.. Enumerable.Range(0, 3).Select(seed => GetLoop(client, StoreOnly, ids, rows, seed)), ScoreLoop(client, queries, documentIds, expectedScores)]))
        {
            await load.UntilAsync(reads: 100);
            for (int put = 0; put < 20; put++)
            {
                var newIds = Enumerable.Range(0, 4).Select(i => $"new-{put}-{i}").ToArray();
                var newRows = Wire.RandomRows(new Random(100 + put), newIds.Length, Dims);
                await client.PutAsync(StoreOnly, newRows, Dims, ids: newIds);
                delays.AddRange(await DelaysUntilServedAsync(cluster, StoreOnly, newIds, newRows));
            }
            Output.WriteLine($"reads through nginx during the puts: {load.Reads}, failures: {load.Failures.Count}");
            Assert.Empty(load.Failures);
        }
        delays.Sort();
        Output.WriteLine($"Put acknowledged -> served by a follower ({delays.Count} observations, 20 puts x 2 followers): " +
            $"p50 {delays[delays.Count / 2]:0} ms, max {delays[^1]:0} ms; bound {BoundMs} ms + one poll");
        Assert.True(delays[^1] <= BoundMs + MarginMs, $"a follower served a Put {delays[^1]:0} ms after its acknowledgement");
        Assert.Equal((ulong)(ids.Length + 80), (await RowsAsync(cluster.Writer, StoreOnly))?.DocumentRows);
    }

    [Fact]
    public async Task A_follower_killed_under_read_load_fails_no_read_and_with_the_writer_killed_followers_serve_what_was_committed()
    {
        var cluster = await StartClusterAsync();
        using var client = new RoutingClient(cluster.Nginx.Address);
        var ids = Enumerable.Range(0, 64).Select(i => $"r{i}").ToArray();
        var rows = Wire.RandomRows(new Random(5), ids.Length, Dims);
        await client.PutAsync(StoreOnly, rows, Dims, ids: ids);
        await DelaysUntilServedAsync(cluster, StoreOnly, ids, rows);

        // The Python client reads through the kills too, in its own process.
        using var signals = new TempDirectory();
        string ready = Path.Combine(signals.Path, "ready"), stop = Path.Combine(signals.Path, "stop");
        var pythonReads = RunPythonAsync("routed_reads.py", cluster.Nginx.HostAndPort, StoreOnly, string.Join(',', ids[..16]), ready, stop);
        await Testing.Wait.UntilAsync(() => File.Exists(ready) || pythonReads.IsCompleted, "the Python reader's first reads");

        await using (var load = ReadLoad.Start([.. Enumerable.Range(0, 4).Select(seed => GetLoop(client, StoreOnly, ids, rows, seed))]))
        {
            await load.UntilAsync(reads: 200);
            await cluster.Second.KillAsync();
            long atKill = load.Reads;
            await load.UntilAsync(reads: atKill + 500);
            Output.WriteLine($"reads: {load.Reads} ({load.Reads - atKill} after the follower's SIGKILL), failures: {load.Failures.Count}");

            await cluster.Writer.KillAsync();
            var refused = await Assert.ThrowsAsync<RpcException>(() => client.PutAsync(StoreOnly, rows, Dims, ids: ids));
            Output.WriteLine($"Put with the writer killed: {refused.StatusCode}: {refused.Status.Detail}");
            Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
            Assert.Contains("the writer of the model did not answer", refused.Status.Detail, StringComparison.Ordinal);
            long atWriterKill = load.Reads;
            await load.UntilAsync(reads: atWriterKill + 300);
            Output.WriteLine($"reads: {load.Reads - atWriterKill} after the writer's SIGKILL, failures: {load.Failures.Count}");
            Assert.Empty(load.Failures);
        }
        await File.WriteAllTextAsync(stop, "");
        Output.WriteLine(await pythonReads);
        var served = await cluster.First.Client.GetAsync(new GetRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { ids } });
        Assert.Equal(Wire.Pack(rows, Dims).Data, served.Vectors.Data);
        // The kill was felt: nginx tried the dead follower and went on to the other (one line, both upstreams), or failed
        // a read in flight on it (UNAVAILABLE in a headers-only 204), which the client sent again.
        string killed = Port(cluster.Second);
        var disturbed = cluster.Nginx.AccessLines()
            .Where(c => c.Method == "Get" && c.Upstream.Contains(killed, StringComparison.Ordinal) && (c.Upstream.Contains(',', StringComparison.Ordinal) || c.HttpStatus == "204"))
            .ToList();
        foreach (var call in disturbed) Output.WriteLine($"{call.Method} upstream={call.Upstream} http={call.HttpStatus} grpc={call.GrpcStatus}");
        Assert.NotEmpty(disturbed);
    }

    [Fact]
    public async Task After_an_invalidate_through_nginx_no_follower_serves_an_old_row_within_the_bound_and_readers_see_no_error()
    {
        var cluster = await StartClusterAsync("--EmbeddingCache:Storage:InvalidatedRetentionSeconds=1");
        using var client = new RoutingClient(cluster.Nginx.Address);
        var ids = Enumerable.Range(0, 64).Select(i => $"old-{i}").ToArray();
        var rows = Wire.RandomRows(new Random(6), ids.Length, Dims);
        await client.PutAsync(StoreOnly, rows, Dims, ids: ids);
        await DelaysUntilServedAsync(cluster, StoreOnly, ids, rows);
        string modelFolder = Path.Combine(Artifacts.Path, "embeddings", StoreOnly);

        await using (var load = ReadLoad.Start([.. Enumerable.Range(0, 4).Select(seed => GetLoop(client, StoreOnly, ids, rows, seed, missingAllowed: true))]))
        {
            await load.UntilAsync(reads: 100);
            await client.InvalidateAsync(StoreOnly);
            var invalidated = Stopwatch.StartNew();
            var delays = await Task.WhenAll(cluster.Followers.Select(async follower =>
            {
                await Testing.Wait.UntilAsync(async () =>
                    (await follower.Client.GetAsync(new GetRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { ids } })).FoundCount == 0,
                    "a follower to serve no invalidated row");
                return invalidated.Elapsed.TotalMilliseconds;
            }));
            Output.WriteLine($"Invalidate acknowledged -> no old row on the followers: {string.Join(", ", delays.Select(d => $"{d:0} ms"))}");
            Assert.All(delays, delay => Assert.True(delay <= BoundMs + MarginMs, $"a follower served old rows {delay:0} ms after the Invalidate"));
            // The old generation's files are deleted after the retention while the followers keep answering reads.
            await Testing.Wait.UntilAsync(() => !Directory.EnumerateDirectories(modelFolder, ".trash-*").Any(), "the invalidated generation's files to be deleted");
            long atDeletion = load.Reads;
            await load.UntilAsync(reads: atDeletion + 200);
            Output.WriteLine($"reads through nginx: {load.Reads}, failures: {load.Failures.Count}");
            Assert.Empty(load.Failures);
        }
    }

    [Fact]
    public async Task A_write_sent_to_a_follower_is_refused_naming_the_writer_and_a_77_MB_put_through_nginx_reaches_the_writer()
    {
        const int rows = 50_000;
        var cluster = await StartClusterAsync();
        var straight = await Assert.ThrowsAsync<RpcException>(() => cluster.First.Client.PutAsync(new PutRequest
        {
            Model = StoreOnly,
            Kind = Kind.Document,
            Ids = { "misrouted" },
            Vectors = Wire.Pack(Wire.RandomRows(new Random(8), 1, Dims), Dims),
        }).ResponseAsync);
        Output.WriteLine($"Put straight to a follower: {straight.StatusCode}: {straight.Status.Detail}");
        Assert.Equal(StatusCode.FailedPrecondition, straight.StatusCode);
        Assert.StartsWith("this server is a read-only follower", straight.Status.Detail, StringComparison.Ordinal);
        Assert.Contains(cluster.Writer.Address, straight.Status.Detail, StringComparison.Ordinal);

        using var channel = Channel(cluster.Nginx);
        var client = new CacheClient(channel);
        var ids = Enumerable.Range(0, rows).Select(i => $"big-{i}").ToArray();
        var request = new PutRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { ids }, Vectors = Wire.Pack(Wire.RandomRows(new Random(77), rows, 384), 384) };
        Assert.True(request.CalculateSize() > 77_000_000);
        var routed = new Metadata { { "embcache-model", StoreOnly } };

        var reply = await client.PutAsync(request, headers: routed);

        Assert.Equal((uint)rows, reply.Stored);
        Assert.Equal((ulong)rows, (await RowsAsync(cluster.Writer, StoreOnly))?.DocumentRows);
        // Read back through nginx, from a follower once it has caught up: the same 77 MB.
        GetResponse? back = null;
        await Testing.Wait.UntilAsync(async () =>
        {
            back = await client.GetAsync(new GetRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { ids } }, headers: routed);
            return back.FoundCount == rows;
        }, "the 77 MB Put to be served through nginx");
        Assert.True(request.Vectors.Data.Span.SequenceEqual(back!.Vectors.Data.Span));
        Assert.All(cluster.Nginx.AccessLines().Where(c => c.Method == "Get"), call => Assert.DoesNotContain(Port(cluster.Writer), call.Upstream, StringComparison.Ordinal));
        Assert.Empty(cluster.Writer.ErrorLines());
    }

    [Fact]
    public async Task With_every_server_down_the_clients_retry_reads_and_send_a_write_once_each_failing_unavailable()
    {
        // Ports nothing listens on: nginx answers every call itself, one access line per attempt a client makes.
        var nginx = await NginxProcess.StartAsync(new Dictionary<string, string>
        {
            ["DEFAULT_WRITER"] = $"127.0.0.1:{LoopbackPort.Free()}",
            ["GPU_CORPUS_WRITER"] = $"127.0.0.1:{LoopbackPort.Free()}",
            ["FOLLOWER_1"] = $"127.0.0.1:{LoopbackPort.Free()}",
            ["FOLLOWER_2"] = $"127.0.0.1:{LoopbackPort.Free()}",
        });
        proxies.Add(nginx);
        using var client = new RoutingClient(nginx.Address);

        var read = await Assert.ThrowsAsync<RpcException>(() => client.GetByIdsAsync("net-read", ["a"]));
        var write = await Assert.ThrowsAsync<RpcException>(() => client.PutAsync("net-write", new float[4], 4, ids: ["a"]));
        Output.WriteLine(await RunPythonAsync("routed_unavailable.py", nginx.HostAndPort));

        Assert.Equal(StatusCode.Unavailable, read.StatusCode);
        Assert.StartsWith("nginx: no follower answered the read", read.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(StatusCode.Unavailable, write.StatusCode);
        Assert.StartsWith("nginx: the writer of the model did not answer", write.Status.Detail, StringComparison.Ordinal);
        var calls = await CallsSeenAsync(nginx, minimum: 4 + 1 + 4 + 1 + 4);
        var attempts = calls.GroupBy(c => c.Model).ToDictionary(g => g.Key, g => g.Count());
        Output.WriteLine(string.Join(", ", attempts.Select(a => $"{a.Key}: {a.Value}")));
        Assert.Equal(new Dictionary<string, int> { ["net-read"] = 4, ["net-write"] = 1, ["py-read"] = 4, ["py-write"] = 1, ["py-async-read"] = 4 }, attempts);
    }

    [Fact]
    public void The_readme_shows_lines_of_the_tested_nginx_file_only()
    {
        var readme = File.ReadAllLines(Path.Combine(SourceTree.Root, "README.md"));
        int marker = Array.FindIndex(readme, line => line.StartsWith("<!-- readme-test: nginx", StringComparison.Ordinal));
        Assert.True(marker >= 0 && readme[marker + 1] == "```nginx", "README's nginx block is missing its readme-test marker");
        var shown = readme.Skip(marker + 2).TakeWhile(line => line != "```").Select(line => line.Trim()).Where(line => line.Length > 0).ToList();
        var file = File.ReadAllLines(NginxProcess.ConfigurationFile).Select(line => line.Trim()).ToHashSet();

        Assert.NotEmpty(shown);
        Assert.All(shown, line => Assert.Contains(line, file));
    }

    /// <summary>A writer on the test's root, two followers of it and nginx in front.</summary>
    private async Task<Cluster> StartClusterAsync(params string[] writerArgs)
    {
        var writer = await StartServerAsync(writerArgs);
        string[] follow = ["--follow", $"--EmbeddingCache:Follow:WriterAddress={writer.Address}"];
        var first = await StartServerAsync(follow);
        var second = await StartServerAsync(follow);
        return new Cluster(writer, first, second, await StartNginxAsync(writer, writer, first, second));
    }

    /// <summary>
    /// Milliseconds from now (just after a Put's acknowledgement) until each follower, asked directly, serves
    /// <paramref name="rows"/> under <paramref name="ids"/> byte for byte.
    /// </summary>
    private static async Task<double[]> DelaysUntilServedAsync(Cluster cluster, string model, string[] ids, float[] rows)
    {
        var acknowledged = Stopwatch.StartNew();
        var expected = Wire.Pack(rows, Dims).Data;
        return await Task.WhenAll(cluster.Followers.Select(async follower =>
        {
            while (true)
            {
                try
                {
                    var got = await follower.Client.GetAsync(new GetRequest { Model = model, Kind = Kind.Document, Ids = { ids } });
                    if (got.FoundCount == ids.Length)
                    {
                        Assert.Equal(expected, got.Vectors.Data);
                        return acknowledged.Elapsed.TotalMilliseconds;
                    }
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
                {
                    // A model the follower has not seen yet.
                }
                if (acknowledged.Elapsed > Testing.Wait.DefaultTimeout) throw new TimeoutException($"a follower did not serve {ids[0]}.. within {Testing.Wait.DefaultTimeout}");
                await Task.Delay(2);
            }
        }));
    }

    private static async Task<bool> AllFollowersAsync(Cluster cluster, Func<ServerProcess, Task<bool>> condition)
    {
        foreach (var follower in cluster.Followers)
        {
            if (!await condition(follower)) return false;
        }
        return true;
    }

    /// <summary>Gets of 8 random rows, each checked byte for byte (a zero or torn row differs); missing rows allowed when asked.</summary>
    private static Func<CancellationToken, Task<string?>> GetLoop(RoutingClient client, string model, string[] ids, float[] rows, int seed, bool missingAllowed = false)
    {
        var random = new Random(seed);
        return async cancel =>
        {
            int start = random.Next(ids.Length - 8);
            var got = await client.GetByIdsAsync(model, ids[start..(start + 8)], cancellationToken: cancel);
            for (int i = 0; i < 8; i++)
            {
                bool missing = got.Sources[i] == RowSource.Missing;
                if (missing && missingAllowed)
                {
                    if (got.Vectors.Row(i).ContainsAnyExcept(0f)) return $"row {start + i} is missing but not zero";
                    continue;
                }
                if (!got.Vectors.Row(i).SequenceEqual(rows.AsSpan((start + i) * Dims, Dims))) return $"row {start + i} differs from what was put ({got.Sources[i]})";
            }
            return null;
        };
    }

    private static Func<CancellationToken, Task<string?>> ScoreLoop(RoutingClient client, string[] queries, string[] documentIds, ByteString expected) =>
        async cancel =>
        {
            var scored = await client.ScoreAsync(Wire.MiniLM, queries, documentIds, cancellationToken: cancel);
            return scored.Scores.Equals(expected) ? null : "Score through nginx differs from the writer's";
        };

    private async Task<NginxProcess> StartNginxAsync(ServerProcess writer, ServerProcess gpuWriter, ServerProcess follower1, ServerProcess follower2)
    {
        var nginx = await NginxProcess.StartAsync(new Dictionary<string, string>
        {
            ["DEFAULT_WRITER"] = HostAndPort(writer),
            ["GPU_CORPUS_WRITER"] = HostAndPort(gpuWriter),
            ["FOLLOWER_1"] = HostAndPort(follower1),
            ["FOLLOWER_2"] = HostAndPort(follower2),
        });
        proxies.Add(nginx);
        return nginx;
    }

    /// <summary>The access log once it holds <paramref name="minimum"/> calls: nginx writes a line after the reply has left.</summary>
    private static async Task<IReadOnlyList<AccessLine>> CallsSeenAsync(NginxProcess nginx, int minimum)
    {
        await Testing.Wait.UntilAsync(() => nginx.AccessLines().Count >= minimum, $"{minimum} calls in nginx's access log");
        return nginx.AccessLines();
    }

    private async Task AssertVerbAsync(params string[] args)
    {
        var (exitCode, output) = await Embcache.RunAsync(args);
        Output.WriteLine($"embcache {string.Join(' ', args)}:\n{output}");
        Assert.True(exitCode == 0, output);
    }

    /// <summary>A script of tests/python with the package imported from the source tree, as researchers run it.</summary>
    private static Task<string> RunPythonAsync(string script, params string[] args) =>
        ExternalTool.RunAsync("/usr/bin/python3", Path.Combine(AppContext.BaseDirectory, "python"),
            new Dictionary<string, string> { ["PYTHONPATH"] = Path.Combine(SourceTree.Root, "src", "python"), ["PYTHONDONTWRITEBYTECODE"] = "1" },
            TimeSpan.FromMinutes(5), [script, .. args]);

    private static async Task<ModelInfo?> RowsAsync(ServerProcess server, string model) =>
        (await server.Client.ListModelsAsync(new ListModelsRequest())).Models.SingleOrDefault(m => m.Name == model);

    private static string HostAndPort(ServerProcess server) => server.Address["http://".Length..];

    private static string Port(ServerProcess server) => ":" + server.Address.Split(':')[^1];

    private static GrpcChannel Channel(NginxProcess nginx) =>
        GrpcChannel.ForAddress(nginx.Address, new GrpcChannelOptions { MaxReceiveMessageSize = null, MaxSendMessageSize = null });

    public override async Task DisposeAsync()
    {
        foreach (var nginx in proxies)
        {
            Output.WriteLine($"--- nginx error log ---\n{nginx.ErrorLog}");
            await nginx.DisposeAsync();
        }
        await base.DisposeAsync();
    }

    private sealed record Cluster(ServerProcess Writer, ServerProcess First, ServerProcess Second, NginxProcess Nginx)
    {
        public ServerProcess[] Followers => [First, Second];
    }

    /// <summary>Readers looping through nginx, one task each; a read returns what was wrong with its reply, or null.</summary>
    private sealed class ReadLoad : IAsyncDisposable
    {
        private readonly CancellationTokenSource stop = new();
        private readonly Task[] loops;
        private long reads;

        private ReadLoad(Func<CancellationToken, Task<string?>>[] readers)
        {
            loops = [.. readers.Select(read => Task.Run(() => LoopAsync(read)))];
        }

        public long Reads => Interlocked.Read(ref reads);

        public ConcurrentQueue<string> Failures { get; } = new();

        public static ReadLoad Start(Func<CancellationToken, Task<string?>>[] readers) => new(readers);

        public Task UntilAsync(long reads) =>
            Testing.Wait.UntilAsync(() => Reads >= reads || loops.Any(l => l.IsCompleted), $"{reads} reads through nginx");

        private async Task LoopAsync(Func<CancellationToken, Task<string?>> read)
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    if (await read(stop.Token) is { } wrong) Failures.Enqueue(wrong);
                }
                catch (RpcException e) when (!stop.IsCancellationRequested)
                {
                    Failures.Enqueue($"{e.StatusCode}: {e.Status.Detail}");
                }
                catch (RpcException) when (stop.IsCancellationRequested)
                {
                    return;
                }
                Interlocked.Increment(ref reads);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await stop.CancelAsync();
            await Task.WhenAll(loops);
            stop.Dispose();
        }
    }
}
