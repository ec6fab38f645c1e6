using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using EmbeddingCache.Benchmarks.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using CacheClient = EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient;

namespace EmbeddingCache.Benchmarks.Flood;

/// <summary>
/// The <c>flood</c> verb: do bad clients hurt good ones? Good clients Get and Embed cached rows without pause;
/// phases alternate between them alone and them alongside flooding clients that send, as fast as the server
/// answers, messages over the size limit, invalid requests and requests with too many texts. The figure is the
/// good clients' p99 latency flooded over alone, per repetition (target: at most 2x).
/// </summary>
public static class FloodBenchmark
{
    /// <summary>The server's message size limit in this run; the oversize flood sends just over it.</summary>
    public const int MaxMessageBytes = 4 << 20;

    /// <summary>The server's rows-per-request limit in this run; the too-many flood sends one more.</summary>
    public const int MaxRows = 1024;

    private const string Model = "all-MiniLM-L6-v2";

    private enum Op
    {
        Get,
        Embed,
    }

    private sealed record Phase(int Repetition, bool Flooded);

    private sealed record PhaseResult(
        Phase Phase, Dictionary<Op, double[]> LatenciesMicroseconds, PhaseLoad Load, TimeSpan ServerCpu, long FloodRequests, IReadOnlyDictionary<string, long> FloodStatuses);

    /// <summary>Runs the phases and writes the report; returns the process exit code.</summary>
    public static async Task<int> RunAsync(FloodOptions options, CancellationToken cancellationToken)
    {
        var loadBefore = MachineLoad.LoadAverage();
        var workRoot = Path.Combine(Path.GetTempPath(), $"embcache-flood-{Guid.NewGuid():N}");
        Directory.CreateDirectory(workRoot);
        try
        {
            await using var server = await EmbcacheServerProcess.StartAsync(
                workRoot,
                [$"--EmbeddingCache:MaxReceiveMessageBytes={MaxMessageBytes}", $"--EmbeddingCache:MaxRowsPerRequest={MaxRows}"],
                cancellationToken).ConfigureAwait(false);
            Console.WriteLine($"embcache at {server.Address}; load average before: {loadBefore}");

            var texts = Enumerable.Range(0, options.Rows).Select(i => $"flood benchmark passage {i}: dense retrieval of cached vectors").ToArray();
            var ids = Enumerable.Range(0, options.Rows).Select(i => $"doc-{i:D6}").ToArray();
            using (var warmChannel = server.OpenChannel())
            {
                var warm = new CacheClient(warmChannel);
                for (var start = 0; start < texts.Length; start += 64)
                {
                    var count = Math.Min(64, texts.Length - start);
                    await warm.EmbedAsync(new EmbedRequest
                    {
                        Model = Model,
                        Kind = Kind.Document,
                        Texts = { texts.Skip(start).Take(count) },
                        Ids = { ids.Skip(start).Take(count) },
                    }, cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                // A store-only model for the NaN Puts to aim at, so they pass every check but the finite one.
                await warm.PutAsync(new PutRequest { Model = "flood-store", Kind = Kind.Document, Ids = { "x" }, Vectors = Pack([1f, 2f, 3f, 4f], 4) },
                    cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            Console.WriteLine($"Warmed {options.Rows} rows. {options.Repetitions} x (alone, flooded), {options.PhaseSeconds} s each, " +
                              $"{options.GoodClients} good clients, {options.Flooders} flooders.");

            var results = new List<PhaseResult>();
            for (var repetition = 1; repetition <= options.Repetitions; repetition++)
            {
                foreach (var flooded in new[] { false, true })
                {
                    var result = await RunPhaseAsync(server, new Phase(repetition, flooded), texts, ids, options, cancellationToken).ConfigureAwait(false);
                    results.Add(result);
                    Console.WriteLine(Describe(result));
                }
            }

            var report = FloodReport.Render(results.Select(r => new FloodReport.Row(
                r.Phase.Repetition, r.Phase.Flooded, r.LatenciesMicroseconds[Op.Get], r.LatenciesMicroseconds[Op.Embed], r.Load, r.ServerCpu, r.FloodRequests, r.FloodStatuses)).ToList(),
                options, loadBefore, MachineLoad.LoadAverage());
            var output = options.Output ?? ResultsFile.DefaultPath("flood.md");
            Directory.CreateDirectory(Path.GetDirectoryName(output)!);
            await File.WriteAllTextAsync(output, report, cancellationToken).ConfigureAwait(false);
            Console.WriteLine();
            Console.WriteLine(report);
            Console.WriteLine($"Report written to {output}");
            return 0;
        }
        finally
        {
            try
            {
                Directory.Delete(workRoot, recursive: true);
            }
            catch (IOException)
            {
                // The killed server may hold a file a moment longer; the temp cleaner gets it.
            }
        }
    }

    private static async Task<PhaseResult> RunPhaseAsync(
        EmbcacheServerProcess server, Phase phase, string[] texts, string[] ids, FloodOptions options, CancellationToken cancellationToken)
    {
        var latencies = new ConcurrentDictionary<Op, ConcurrentBag<double>>();
        latencies[Op.Get] = [];
        latencies[Op.Embed] = [];
        var statuses = new ConcurrentDictionary<string, long>();
        long floodRequests = 0;

        using var phaseEnd = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var channels = new List<GrpcChannel>();
        try
        {
            var watch = MachineLoad.Watch(() => OwnCpuTime() + server.CpuTime);
            var serverCpuBefore = server.CpuTime;
            var tasks = new List<Task>();
            for (var client = 0; client < options.GoodClients; client++)
            {
                var channel = server.OpenChannel();
                channels.Add(channel);
                tasks.Add(GoodClientAsync(new CacheClient(channel), client, texts, ids, options.RowsPerCall, latencies, phaseEnd.Token));
            }
            if (phase.Flooded)
            {
                for (var flooder = 0; flooder < options.Flooders; flooder++)
                {
                    var channel = server.OpenChannel();
                    channels.Add(channel);
                    tasks.Add(FloodAsync(new CacheClient(channel), flooder, options.Abuses, statuses, () => Interlocked.Increment(ref floodRequests), phaseEnd.Token));
                }
            }

            await Task.Delay(TimeSpan.FromSeconds(options.PhaseSeconds), cancellationToken).ConfigureAwait(false);
            await phaseEnd.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(tasks).ConfigureAwait(false);
            var load = watch.Stop();
            var serverCpu = server.CpuTime - serverCpuBefore;
            cancellationToken.ThrowIfCancellationRequested();
            return new PhaseResult(phase, latencies.ToDictionary(l => l.Key, l => l.Value.Order().ToArray()), load, serverCpu, floodRequests, statuses);
        }
        finally
        {
            foreach (var channel in channels)
            {
                channel.Dispose();
            }
        }
    }

    /// <summary>Alternates Get by ids and Embed of cached texts over a sliding window of the warmed rows, one call at a time.</summary>
    private static async Task GoodClientAsync(
        CacheClient client, int seed, string[] texts, string[] ids, int rowsPerCall,
        ConcurrentDictionary<Op, ConcurrentBag<double>> latencies, CancellationToken phaseEnd)
    {
        var random = new Random(seed);
        while (!phaseEnd.IsCancellationRequested)
        {
            var start = random.Next(texts.Length - rowsPerCall + 1);
            foreach (var op in new[] { Op.Get, Op.Embed })
            {
                var began = Stopwatch.GetTimestamp();
                try
                {
                    if (op == Op.Get)
                    {
                        var reply = await client.GetAsync(new GetRequest { Model = Model, Kind = Kind.Document, Ids = { ids.AsSpan(start, rowsPerCall).ToArray() } },
                            cancellationToken: phaseEnd).ConfigureAwait(false);
                        Expect(reply.FoundCount == rowsPerCall, "a warmed row is missing");
                    }
                    else
                    {
                        var reply = await client.EmbedAsync(new EmbedRequest { Model = Model, Kind = Kind.Document, Texts = { texts.AsSpan(start, rowsPerCall).ToArray() } },
                            cancellationToken: phaseEnd).ConfigureAwait(false);
                        Expect(reply.CachedCount == rowsPerCall, "a warmed text was not a hit");
                    }
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled && phaseEnd.IsCancellationRequested)
                {
                    return; // the phase ended mid-call: that call is not counted
                }
                latencies[op].Add(Stopwatch.GetElapsedTime(began).TotalMicroseconds);
            }
        }
    }

    /// <summary>Sends the abuses in turn as fast as the server answers; counts each reply's status.</summary>
    private static async Task FloodAsync(
        CacheClient client, int flooder, FloodAbuse[] abusesSent, ConcurrentDictionary<string, long> statuses, Action sent, CancellationToken phaseEnd)
    {
        var oversize = new PutRequest
        {
            Model = "flood-store",
            Kind = Kind.Document,
            Ids = { "big" },
            Vectors = new Vectors { Count = 1, Dims = (MaxMessageBytes / 4) + 1024, Dtype = DType.Float32, Data = ByteString.CopyFrom(new byte[MaxMessageBytes + 4096]) },
        };
        var nan = new PutRequest { Model = "flood-store", Kind = Kind.Document, Ids = { "nan" }, Vectors = Pack([1f, float.NaN, 3f, 4f], 4) };
        var badName = new EmbedRequest { Model = "../../etc/passwd", Kind = Kind.Document, Texts = { "x" } };
        var mismatched = new EmbedRequest { Model = Model, Kind = Kind.Document, Texts = { "a", "b" }, Ids = { "1" } };
        var tooMany = new EmbedRequest { Model = Model, Kind = Kind.Document, Texts = { Enumerable.Range(0, MaxRows + 1).Select(i => $"t{i}") } };
        var abuses = abusesSent;
        for (var turn = flooder; !phaseEnd.IsCancellationRequested; turn++)
        {
            var abuse = abuses[turn % abuses.Length];
            StatusCode code;
            try
            {
                _ = abuse switch
                {
                    FloodAbuse.Oversize => (object)await client.PutAsync(oversize, cancellationToken: phaseEnd).ConfigureAwait(false),
                    FloodAbuse.NaNPut => await client.PutAsync(nan, cancellationToken: phaseEnd).ConfigureAwait(false),
                    FloodAbuse.BadModelName => await client.EmbedAsync(badName, cancellationToken: phaseEnd).ConfigureAwait(false),
                    FloodAbuse.MismatchedLengths => await client.EmbedAsync(mismatched, cancellationToken: phaseEnd).ConfigureAwait(false),
                    _ => await client.EmbedAsync(tooMany, cancellationToken: phaseEnd).ConfigureAwait(false),
                };
                code = StatusCode.OK;
            }
            catch (RpcException e)
            {
                if (e.StatusCode == StatusCode.Cancelled && phaseEnd.IsCancellationRequested)
                {
                    return;
                }
                code = e.StatusCode;
            }
            sent();
            statuses.AddOrUpdate($"{abuse} {code}", 1, (_, n) => n + 1);
        }
    }

    private static void Expect(bool condition, string what)
    {
        if (!condition)
        {
            throw new InvalidOperationException($"A good client's reply was wrong: {what}.");
        }
    }

    private static Vectors Pack(float[] values, int dims) => new()
    {
        Count = (uint)(values.Length / dims),
        Dims = (uint)dims,
        Dtype = DType.Float32,
        Data = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())),
    };

    private static TimeSpan OwnCpuTime()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }

    private static string Describe(PhaseResult result)
    {
        var text = new StringBuilder().Append(CultureInfo.InvariantCulture, $"rep {result.Phase.Repetition} {(result.Phase.Flooded ? "flooded" : "alone  ")}:");
        foreach (var (op, values) in result.LatenciesMicroseconds)
        {
            text.Append(CultureInfo.InvariantCulture, $" {op} n={values.Length} p50={FloodReport.Percentile(values, 0.50):F0} µs p99={FloodReport.Percentile(values, 0.99):F0} µs;");
        }
        if (result.Phase.Flooded)
        {
            text.Append(CultureInfo.InvariantCulture, $" flood {result.FloodRequests} requests;");
        }
        text.Append(CultureInfo.InvariantCulture, $" server CPU {result.ServerCpu.TotalSeconds:F2} s; machine busy {result.Load.MachineBusy:P0}, others {result.Load.Others:P0}");
        return text.ToString();
    }
}
