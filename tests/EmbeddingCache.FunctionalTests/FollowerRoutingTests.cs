using System.Collections.Concurrent;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;
using CacheClient = EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient;
using RoutingClient = EmbeddingCache.Client.EmbeddingCacheClient;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// The repository's nginx file (src/EmbeddingCache.Server/deploy/nginx-embcache.conf) in front of real servers, all on
/// 127.0.0.1: writes reach the model's writer by the embcache-model header every client sends, reads go to the
/// readers and are retried on another when one is killed, and a 77 MB Put passes.
/// </summary>
public sealed class FollowerRoutingTests(ITestOutputHelper output) : ServerTest(output)
{
    private const string GpuCorpus = "gpu-corpus"; // the model the file routes to its own writer
    private const string StoreOnly = "routed-store";
    private const int Dims = 8;
    private readonly List<NginxProcess> proxies = [];
    private readonly List<TempDirectory> readerRoots = [];

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

        Assert.Equal(4ul, (await RowsAsync(gpuWriter, GpuCorpus))?.DocumentRows);
        Assert.Null(await RowsAsync(writer, GpuCorpus));
        Assert.Equal(3ul, (await RowsAsync(writer, StoreOnly))?.DocumentRows);
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
    public async Task A_put_of_77_MB_through_nginx_reaches_the_writer_and_reads_back_whole()
    {
        const int rows = 50_000;
        var writer = await StartServerAsync();
        var nginx = await StartNginxAsync(writer, writer, writer, writer);
        using var channel = Channel(nginx);
        var client = new CacheClient(channel);
        var ids = Enumerable.Range(0, rows).Select(i => $"big-{i}").ToArray();
        var request = new PutRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { ids }, Vectors = Wire.Pack(Wire.RandomRows(new Random(77), rows, 384), 384) };
        Assert.True(request.CalculateSize() > 77_000_000);

        var reply = await client.PutAsync(request, headers: new Metadata { { "embcache-model", StoreOnly } });

        Assert.Equal((uint)rows, reply.Stored);
        Assert.Equal((ulong)rows, (await RowsAsync(writer, StoreOnly))?.DocumentRows);
        var back = await client.GetAsync(new GetRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { ids } });
        Assert.Equal((uint)rows, back.FoundCount);
        Assert.True(request.Vectors.Data.Span.SequenceEqual(back.Vectors.Data.Span));
        Assert.Empty(writer.ErrorLines());
    }

    [Fact]
    public async Task A_reader_killed_under_read_load_fails_no_read_and_a_killed_writer_fails_writes_loudly()
    {
        const int rowCount = 64;
        var writer = await StartServerAsync();
        var (first, second) = await StartReadersAsync();
        var ids = Enumerable.Range(0, rowCount).Select(i => $"r{i}").ToArray();
        var rows = Wire.RandomRows(new Random(5), rowCount, Dims);
        foreach (var reader in new[] { first, second })
        {
            await reader.Client.PutAsync(new PutRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { ids }, Vectors = Wire.Pack(rows, Dims) });
        }
        var nginx = await StartNginxAsync(writer, writer, first, second);
        using var client = new RoutingClient(nginx.Address);

        await using (var load = ReadLoad.Start(client, StoreOnly, ids, rows, readers: 4))
        {
            await load.UntilAsync(reads: 200);
            await second.KillAsync();
            long atKill = load.Reads;
            await load.UntilAsync(reads: atKill + 500);
            Output.WriteLine($"reads: {load.Reads} ({load.Reads - atKill} after the reader's kill), failures: {load.Failures.Count}");

            await writer.KillAsync();
            var refused = await Assert.ThrowsAsync<RpcException>(() => client.PutAsync(StoreOnly, rows, Dims, ids: ids));
            Output.WriteLine($"Put with the writer killed: {refused.StatusCode}: {refused.Status.Detail}");
            Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
            Assert.Contains("the writer of the model did not answer", refused.Status.Detail, StringComparison.Ordinal);
            long atWriterKill = load.Reads;
            await load.UntilAsync(reads: atWriterKill + 200);
            Assert.Empty(load.Failures);
        }
        // The kill was felt: nginx tried the dead reader and went on to the other (one line, both upstreams), or failed
        // a read in flight on it, which the client sent again.
        var disturbed = nginx.AccessLines().Where(c => c.Method == "Get" && (c.Upstream.Contains(',', StringComparison.Ordinal) || c.GrpcStatus != "0")).ToList();
        foreach (var call in disturbed) Output.WriteLine($"{call.Method} upstream={call.Upstream} http={call.HttpStatus} grpc={call.GrpcStatus}");
        Assert.NotEmpty(disturbed);
    }

    /// <summary>Two servers that serve reads: standalone ones on roots of their own, each given the rows it serves.</summary>
    private async Task<(ServerProcess First, ServerProcess Second)> StartReadersAsync()
    {
        var roots = new[] { new TempDirectory(), new TempDirectory() };
        readerRoots.AddRange(roots);
        return (await StartServerOnAsync(roots[0].Path), await StartServerOnAsync(roots[1].Path));
    }

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
        foreach (var root in readerRoots) root.Dispose();
    }

    /// <summary>Readers looping Get through nginx, each reply checked byte for byte against the rows put.</summary>
    private sealed class ReadLoad : IAsyncDisposable
    {
        private readonly CancellationTokenSource stop = new();
        private readonly Task[] loops;
        private long reads;

        private ReadLoad(RoutingClient client, string model, string[] ids, float[] rows, int readers)
        {
            loops = [.. Enumerable.Range(0, readers).Select(seed => Task.Run(() => LoopAsync(client, model, ids, rows, seed)))];
        }

        public long Reads => Interlocked.Read(ref reads);

        public ConcurrentQueue<string> Failures { get; } = new();

        public static ReadLoad Start(RoutingClient client, string model, string[] ids, float[] rows, int readers) => new(client, model, ids, rows, readers);

        public Task UntilAsync(long reads) =>
            Testing.Wait.UntilAsync(() => Reads >= reads || loops.Any(l => l.IsCompleted), $"{reads} reads through nginx");

        private async Task LoopAsync(RoutingClient client, string model, string[] ids, float[] rows, int seed)
        {
            var random = new Random(seed);
            while (!stop.IsCancellationRequested)
            {
                int start = random.Next(ids.Length - 8);
                try
                {
                    var got = await client.GetByIdsAsync(model, ids[start..(start + 8)], cancellationToken: stop.Token);
                    if (!got.Vectors.Floats.SequenceEqual(rows.AsSpan(start * Dims, 8 * Dims)))
                    {
                        Failures.Enqueue($"rows {start}..{start + 8} differ from what was put");
                    }
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
