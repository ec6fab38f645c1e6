using System.Runtime.InteropServices;
using BenchmarkDotNet.Running;
using EmbeddingCache.Benchmarks.Flood;
using EmbeddingCache.Benchmarks.HitPath;
using EmbeddingCache.Benchmarks.Micro;
using EmbeddingCache.Benchmarks.MissPath;
using EmbeddingCache.Benchmarks.OpenTime;
using EmbeddingCache.Benchmarks.OnnxSettings;

namespace EmbeddingCache.Benchmarks;

/// <summary>
/// The verbs of the benchmark program. Each end-to-end comparison is a verb of its own that prints ratios measured
/// in the same run; <c>micro</c> hands over to BenchmarkDotNet for in-process work. To add a comparison: give it a
/// verb here, an options class with its usage, and a folder beside MissPath/ and HitPath/.
/// </summary>
public static class BenchmarkVerbs
{
    private const string Usage = """
        Usage: dotnet run -c Release --project benchmarks/EmbeddingCache.Benchmarks -- VERB [options]

        Verbs:
          miss    miss-path throughput against raw ONNX Runtime and a peer (see below)
          hits    hit-path latency and throughput against a bare gRPC server, Redis and numpy memory maps (see below)
          flood   good clients' p99 latency alone and while others flood oversize and invalid requests (see below)
          open    open time to first hit and index bytes per entry of a 1M and a 2M cache (see below)
          onnx    ONNX Runtime session settings measured through the server's encoder (see below)
          micro   BenchmarkDotNet micro-benchmarks of in-process work; BenchmarkDotNet's own options follow
                  (e.g. micro --filter '*Tokeniz*', micro --list flat)

        """;

    private static string FullUsage => Usage + MissPathOptions.Usage + "\n" + HitPathOptions.Usage + "\n" + FloodOptions.Usage + "\n" + OpenTimeBenchmark.Usage + "\n" + OnnxSettingsOptions.Usage;

    /// <summary>Runs the verb named by the first argument; returns the exit code.</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(FullUsage);
            return args.Length == 0 ? 2 : 0;
        }

        using var cancellation = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            // The first Ctrl+C stops the run cleanly (servers are killed on the way out); a second one ends the process.
            if (!cancellation.IsCancellationRequested)
            {
                e.Cancel = true;
                Console.Error.WriteLine("Stopping: killing the servers and clients this run started. Press Ctrl+C again to quit at once.");
                cancellation.Cancel();
            }
        };
        Console.CancelKeyPress += onCancel;
        // SIGTERM (kill, a CI timeout) takes the same clean way out; left to the runtime, it ends the process before
        // the servers this run started are stopped.
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            Console.Error.WriteLine("Stopping on SIGTERM: killing the servers and clients this run started.");
            cancellation.Cancel();
        });
        try
        {
            switch (args[0])
            {
                case "miss":
                    return await MissPathBenchmark.RunAsync(MissPathOptions.Parse(args[1..]), cancellation.Token).ConfigureAwait(false);
                case "hits":
                    return await HitPathBenchmark.RunAsync(HitPathOptions.Parse(args[1..]), cancellation.Token).ConfigureAwait(false);
                case "flood":
                    return await FloodBenchmark.RunAsync(FloodOptions.Parse(args[1..]), cancellation.Token).ConfigureAwait(false);
                case "open":
                    return OpenTimeBenchmark.Run(args[1..]);
                case "onnx":
                    return await OnnxSettingsBenchmark.RunAsync(OnnxSettingsOptions.Parse(args[1..]), cancellation.Token).ConfigureAwait(false);
                case "micro":
                    BenchmarkSwitcher.FromAssembly(typeof(BenchmarkVerbs).Assembly).Run(args[1..], MicroBenchmarkConfig.Create());
                    return 0;
                default:
                    Console.Error.WriteLine($"Unknown verb '{args[0]}'.\n\n{FullUsage}");
                    return 2;
            }
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            return 2;
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            Console.Error.WriteLine("Stopped.");
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}
