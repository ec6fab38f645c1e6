using System.Diagnostics;
using System.Text.Json;
using EmbeddingCache.Benchmarks.Infrastructure;

namespace EmbeddingCache.Benchmarks.HitPath;

/// <summary>
/// The <c>hits</c> verb: hit-path latency and throughput of EmbeddingCache from a Python grpcio client, measured in
/// one run against a bare gRPC server (the floor), Redis MGET (the peer) and numpy gathers from memory maps (the
/// limit), plus open time and index memory. This side builds the data, starts and stops every peer on 127.0.0.1,
/// and writes the report; <c>hit_path_client.py</c> takes every client-side measurement.
/// </summary>
public static class HitPathBenchmark
{
    /// <summary>Debian's python3, which has numpy, grpcio and (once installed) redis-py; the pyenv one on PATH may not.</summary>
    public const string Python = "/usr/bin/python3";

    /// <summary>The latency peers, in the report's order.</summary>
    public static readonly string[] LatencyPeers = ["floor", "floor-bytes", "redis", "embcache-get", "embcache-embed", "local-get", "local-lookup", "mmap-segments", "mmap-npy"];

    private static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>Runs the comparison and writes the report and chart; returns the process exit code.</summary>
    public static async Task<int> RunAsync(HitPathOptions options, CancellationToken cancellationToken)
    {
        var runStarted = Stopwatch.GetTimestamp();
        var repository = RepositoryRoot()
                         ?? throw new ArgumentException("Run the hits verb from inside the EmbeddingCache repository: it needs src/python and benchmarks/.");
        var work = Path.GetFullPath(options.WorkDirectory ?? Path.Combine(repository, "benchmarks", ".scratch"));
        var report = new HitPathReport { Options = options, LoadBefore = MachineLoad.LoadAverage(), WorkDirectory = work };
        Console.WriteLine($"hits: {options.Rows:N0} vectors x {HitDataset.Dims}, seed {options.Seed}; data kept in {work}; load average before: {report.LoadBefore}");

        if (!options.SkipRedis)
        {
            await RedisPeer.EnsureInstalledAsync(cancellationToken).ConfigureAwait(false);
        }

        var dataset = HitDataset.In(work, options.Seed);
        var watch = MachineLoad.Watch(OwnTreeCpuTime);
        var phaseStarted = Stopwatch.GetTimestamp();
        Console.WriteLine("Data (made once per seed and size, then reused):");
        var texts = dataset.Texts(options.CachedTexts);
        var npy = dataset.Vectors(0, options.Rows);
        var root = await dataset.RootAsync(options.Rows, options.Rows, texts, cancellationToken).ConfigureAwait(false);
        var doubleRoot = options.SkipOpen ? null : await dataset.RootAsync(2L * options.Rows, options.Rows, texts, cancellationToken).ConfigureAwait(false);
        report.Phases.Add(new Phase("data and caches (reused when present)", Stopwatch.GetElapsedTime(phaseStarted), watch.Stop(), Measures: false));

        var runDirectory = Path.Combine(work, $"run-{Environment.ProcessId}");
        Directory.CreateDirectory(runDirectory);
        try
        {
            if (!options.SkipOpen)
            {
                Console.WriteLine("Open time and index memory (server default settings, warm page cache):");
                var emptyRoot = Path.Combine(runDirectory, "empty-root");
                watch = MachineLoad.Watch(OwnTreeCpuTime);
                phaseStarted = Stopwatch.GetTimestamp();
                report.Opens.AddRange(await OpenTime.MeasureAsync(
                    [(0, emptyRoot), (options.Rows, root), (2L * options.Rows, doubleRoot!)], options.OpenRepeats, cancellationToken).ConfigureAwait(false));
                report.Phases.Add(new Phase("open time", Stopwatch.GetElapsedTime(phaseStarted), watch.Stop(), Measures: true));
            }

            Console.WriteLine("Starting the peers on 127.0.0.1:");
            await using var floor = await FloorServer.StartAsync(options.Sizes.Max(), cancellationToken).ConfigureAwait(false);
            Console.WriteLine($"  floor  {floor.Address}");
            await using var redis = options.SkipRedis ? null : await RedisPeer.StartAsync(Path.Combine(runDirectory, "redis"), cancellationToken).ConfigureAwait(false);
            if (redis is not null)
            {
                watch = MachineLoad.Watch(OwnTreeCpuTime);
                phaseStarted = Stopwatch.GetTimestamp();
                var keys = await redis.LoadAsync(npy, 0, options.Rows, cancellationToken).ConfigureAwait(false);
                report.Phases.Add(new Phase("loading Redis", Stopwatch.GetElapsedTime(phaseStarted), watch.Stop(), Measures: false));
                report.RedisUsedMemory = await redis.UsedMemoryAsync(cancellationToken).ConfigureAwait(false);
                Console.WriteLine($"  redis  127.0.0.1:{redis.Port}: {keys:N0} keys, {report.RedisUsedMemory / 1e6:F0} MB used, loaded in {report.Phases[^1].Elapsed.TotalSeconds:F1} s");
            }

            await using var server = await EmbcacheServerProcess.StartAsync(root, cancellationToken).ConfigureAwait(false);
            Console.WriteLine($"  embcache {server.Address} on {root}");

            var config = new Dictionary<string, object?>
            {
                ["python_path"] = Path.Combine(repository, "src", "python"),
                ["rows"] = options.Rows,
                ["dims"] = HitDataset.Dims,
                ["id_format"] = HitDataset.PythonIdFormat,
                ["npy"] = npy,
                ["artifacts"] = root,
                ["model"] = HitDataset.Model,
                ["texts_file"] = texts,
                ["floor"] = floor.Address,
                ["embcache"] = server.Address,
                ["redis"] = new Dictionary<string, object> { ["host"] = "127.0.0.1", ["port"] = redis?.Port ?? 0 },
                ["pids"] = new Dictionary<string, int>
                {
                    ["floor"] = Environment.ProcessId,
                    ["embcache-get"] = server.ProcessId,
                    ["redis"] = redis?.ProcessId ?? 0,
                },
                ["seed"] = options.Seed,
                ["sizes"] = options.Sizes,
                ["calls"] = options.Sizes.ToDictionary(size => size.ToString(System.Globalization.CultureInfo.InvariantCulture), size => options.CallsAt(size) / options.Rounds),
                ["rounds"] = options.Rounds,
                ["peers"] = LatencyPeers,
                ["skip_peers"] = SkippedPeers(options),
                ["phases"] = options.SkipConcurrency ? new[] { "latency" } : new[] { "latency", "concurrency" },
                ["concurrency"] = new Dictionary<string, object>
                {
                    ["size"] = 32,
                    ["clients"] = options.Clients,
                    ["modes"] = new[] { "threads", "processes" },
                    ["seconds"] = options.Seconds,
                    ["rounds"] = options.ConcurrencyRounds,
                },
            };
            var configPath = Path.Combine(runDirectory, "config.json");
            var resultsPath = Path.Combine(runDirectory, "results.json");
            await File.WriteAllTextAsync(configPath, JsonSerializer.Serialize(config), cancellationToken).ConfigureAwait(false);

            Console.WriteLine("Measuring from Python (round-robin):");
            watch = MachineLoad.Watch(OwnTreeCpuTime);
            phaseStarted = Stopwatch.GetTimestamp();
            using (var sampler = LoadSampler.Start(OwnTreeCpuTime, TimeSpan.FromSeconds(2)))
            {
                await RunPythonAsync(Path.Combine(AppContext.BaseDirectory, "HitPath", "hit_path_client.py"), configPath, resultsPath, cancellationToken).ConfigureAwait(false);
                report.Samples.AddRange(sampler.Samples);
            }

            report.Phases.Add(new Phase("measuring (Python client and peers)", Stopwatch.GetElapsedTime(phaseStarted), watch.Stop(), Measures: true));
            report.ServerMemory = ProcessMemory.Of(server.ProcessId);
            report.Client = JsonSerializer.Deserialize<ClientResults>(await File.ReadAllTextAsync(resultsPath, cancellationToken).ConfigureAwait(false), SnakeCase);
        }
        finally
        {
            try
            {
                Directory.Delete(runDirectory, recursive: true);
            }
            catch (IOException)
            {
                // A server still letting go of its files; the folder is in the scratch area anyway.
            }
        }

        report.LoadAfter = MachineLoad.LoadAverage();
        report.Duration = Stopwatch.GetElapsedTime(runStarted);
        var output = Path.GetFullPath(options.Output ?? Path.Combine(repository, "benchmarks", "results", options.Local ? "local-path.md" : "hit-path.md"));
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        var chart = Path.ChangeExtension(output, ".svg");
        var markdown = report.ToMarkdown(Path.GetFileName(chart));
        await File.WriteAllTextAsync(output, markdown, cancellationToken).ConfigureAwait(false);
        await File.WriteAllTextAsync(chart, report.ToSvg(), cancellationToken).ConfigureAwait(false);
        Console.WriteLine();
        Console.WriteLine(markdown);
        Console.WriteLine($"Written to {output} and {chart}");
        return 0;
    }

    private static string[] SkippedPeers(HitPathOptions options)
    {
        var skipped = new List<string>();
        if (options.SkipRedis)
        {
            skipped.Add("redis");
        }

        if (options.SkipEmbed)
        {
            skipped.Add("embcache-embed");
        }

        if (options.SkipLocal)
        {
            skipped.AddRange(["local-get", "local-lookup", "mmap-segments", "mmap-npy"]);
        }

        return [.. skipped];
    }

    private static async Task RunPythonAsync(string script, string config, string results, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(Python) { UseShellExecute = false };
        foreach (var arg in new[] { script, config, results })
        {
            start.ArgumentList.Add(arg);
        }

        using var python = Process.Start(start) ?? throw new InvalidOperationException($"{Python} did not start");
        void Kill()
        {
            try
            {
                python.Kill(entireProcessTree: true); // with its client processes
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
        }

        EventHandler onExit = (_, _) => Kill();
        AppDomain.CurrentDomain.ProcessExit += onExit;
        try
        {
            await python.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            if (python.ExitCode != 0)
            {
                throw new InvalidOperationException($"the Python client failed (exit code {python.ExitCode}); its output is above");
            }
        }
        finally
        {
            Kill();
            AppDomain.CurrentDomain.ProcessExit -= onExit;
        }
    }

    /// <summary>CPU time of this program and everything it started: servers, Redis, the Python clients.</summary>
    private static TimeSpan OwnTreeCpuTime() => MachineLoad.ProcessTreeCpuTime(Environment.ProcessId);

    /// <summary>The repository this program was built in (where EmbeddingCache.sln is), looking up from its folder, then from the current one.</summary>
    private static string? RepositoryRoot()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
            {
                if (File.Exists(Path.Combine(directory.FullName, "EmbeddingCache.sln")))
                {
                    return directory.FullName;
                }
            }
        }

        return null;
    }
}

/// <summary>A phase of the run, how long it took, how busy the machine was meanwhile, and whether figures come from it (only those phases judge the run quiet or busy).</summary>
public sealed record Phase(string Name, TimeSpan Elapsed, PhaseLoad Load, bool Measures);

/// <summary>Takes a <see cref="PhaseLoad"/> every interval until disposed, to show whether the machine was quiet throughout.</summary>
public sealed class LoadSampler : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    private LoadSampler(Func<TimeSpan> ownCpuTime, TimeSpan interval)
    {
        _loop = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                var watch = MachineLoad.Watch(ownCpuTime);
                try
                {
                    await Task.Delay(interval, _stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                Samples.Add(watch.Stop());
            }
        });
    }

    /// <summary>The samples so far.</summary>
    public List<PhaseLoad> Samples { get; } = [];

    /// <summary>Starts sampling.</summary>
    public static LoadSampler Start(Func<TimeSpan> ownCpuTime, TimeSpan interval) => new(ownCpuTime, interval);

    /// <summary>Stops sampling.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _loop.Wait();
        _stop.Dispose();
    }
}

/// <summary>What hit_path_client.py measured (RESULTS.json).</summary>
public sealed record ClientResults(
    string Python, string Numpy, string Grpcio, string? RedisPy, string? Hiredis, double OpenCacheSeconds,
    List<LatencyRecord>? Latency, List<ConcurrencyRecord>? Concurrency);

/// <summary>One peer's calls at N rows in one round.</summary>
public sealed record LatencyRecord(int Round, int N, string Peer, double[] LatenciesUs);

/// <summary>One concurrency measurement: clients as threads or processes calling one peer for a few seconds.</summary>
public sealed record ConcurrencyRecord(
    int Round, int Clients, string Mode, string Peer, int Calls, double Seconds, double[] LatenciesUs,
    double? ServerCpuS, double ClientsCpuS, double MachineBusy);
