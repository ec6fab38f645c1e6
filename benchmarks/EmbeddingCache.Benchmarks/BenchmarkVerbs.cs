using BenchmarkDotNet.Running;
using EmbeddingCache.Benchmarks.Micro;
using EmbeddingCache.Benchmarks.MissPath;
using EmbeddingCache.Benchmarks.OnnxSettings;

namespace EmbeddingCache.Benchmarks;

/// <summary>
/// The verbs of the benchmark program. Each end-to-end comparison is a verb of its own that prints ratios measured
/// in the same run; <c>micro</c> hands over to BenchmarkDotNet for in-process work. To add a comparison (the hit
/// path against Redis and a bare gRPC server is next): give it a verb here, an options class with its usage, and a
/// folder beside MissPath/.
/// </summary>
public static class BenchmarkVerbs
{
    private const string Usage = """
        Usage: dotnet run -c Release --project benchmarks/EmbeddingCache.Benchmarks -- VERB [options]

        Verbs:
          miss    miss-path throughput against raw ONNX Runtime and a peer (see below)
          onnx    ONNX Runtime session settings measured through the server's encoder (see below)
          micro   BenchmarkDotNet micro-benchmarks of in-process work; BenchmarkDotNet's own options follow
                  (e.g. micro --filter '*Tokeniz*', micro --list flat)

        """;

    /// <summary>Runs the verb named by the first argument; returns the exit code.</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(Usage + MissPathOptions.Usage + OnnxSettingsOptions.Usage);
            return args.Length == 0 ? 2 : 0;
        }

        using var cancellation = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            // The first Ctrl+C stops the run cleanly (servers are killed on the way out); a second one ends the process.
            if (!cancellation.IsCancellationRequested)
            {
                e.Cancel = true;
                Console.Error.WriteLine("Stopping: killing the servers this run started. Press Ctrl+C again to quit at once.");
                cancellation.Cancel();
            }
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            switch (args[0])
            {
                case "miss":
                    return await MissPathBenchmark.RunAsync(MissPathOptions.Parse(args[1..]), cancellation.Token).ConfigureAwait(false);
                case "onnx":
                    return await OnnxSettingsBenchmark.RunAsync(OnnxSettingsOptions.Parse(args[1..]), cancellation.Token).ConfigureAwait(false);
                case "micro":
                    BenchmarkSwitcher.FromAssembly(typeof(BenchmarkVerbs).Assembly).Run(args[1..], MicroBenchmarkConfig.Create());
                    return 0;
                default:
                    Console.Error.WriteLine($"Unknown verb '{args[0]}'.\n\n{Usage}{MissPathOptions.Usage}{OnnxSettingsOptions.Usage}");
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
