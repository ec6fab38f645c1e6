using System.Diagnostics;
using System.Globalization;
using EmbeddingCache.Benchmarks.Infrastructure;
using EmbeddingCache.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace EmbeddingCache.Benchmarks.OpenTime;

/// <summary>
/// The <c>open</c> verb: how long a cache of N vectors takes from opening the artifacts root to its first hit, and
/// what its index costs in memory per entry. Each cache is written once through the real append path (every row
/// with a content key and an id, so both indexes are full), then opened several times in this process: the first
/// open runs with a cold JIT as a freshly started server does, the later ones show the steady cost. After each open
/// one more row is appended: a table sized on open is at its fullest, so that append grows it to its emptiest.
/// </summary>
public static class OpenTimeBenchmark
{
    /// <summary>The usage text of the verb.</summary>
    public const string Usage = """
        open [--rows N[,N...]] [--dims D] [--opens K] [--work-dir DIR]
          Open time to first hit and index bytes per entry of a cache, in process (ArtifactsRoot, no gRPC):
          --rows      cache sizes to measure (default 1000000,2000000); every row has a key and an id
          --dims      floats per vector (default 384)
          --opens     opens per size, the first with a cold JIT (default 3)
          --work-dir  where the caches are written (default: system temp); they are deleted afterwards
        """;

    private const string Model = "open-bench";

    /// <summary>Writes each cache, opens it <c>--opens</c> times and prints one line per open.</summary>
    public static int Run(IReadOnlyList<string> args)
    {
        int[] sizes = [1_000_000, 2_000_000];
        int dims = 384, opens = 3;
        var workDirectory = Path.GetTempPath();
        for (var i = 0; i < args.Count; i++)
        {
            var value = i + 1 < args.Count ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.\n{Usage}");
            switch (args[i])
            {
                case "--rows": sizes = [.. value.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture))]; break;
                case "--dims": dims = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--opens": opens = int.Parse(value, CultureInfo.InvariantCulture); break;
                case "--work-dir": workDirectory = value; break;
                default: throw new ArgumentException($"Unknown argument '{args[i]}'.\n{Usage}");
            }
            i++;
        }

        Console.WriteLine($"open: {Environment.ProcessorCount} cores, load average {MachineLoad.LoadAverage()} (1/5/15 min)");
        // CPU time is the figure a busy machine distorts least: wall time there includes waiting for a core.
        Console.WriteLine("rows       open  ms to first hit  cpu ms  index bytes  bytes/entry  after growth  keys      ids");
        foreach (var rows in sizes)
        {
            var root = Path.Combine(workDirectory, "embcache-open-bench-" + Guid.NewGuid().ToString("N"));
            try
            {
                Write(root, rows, dims);
                for (var open = 1; open <= opens; open++)
                {
                    var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
                    var (elapsed, cpu, indexBytes, grownBytes, keys, ids) = OpenToFirstHit(root, rows + open);
                    var entries = Math.Max(keys, ids);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{rows,-9}  {open,4}  {elapsed.TotalMilliseconds,15:F0}  {(cpu - cpuBefore).TotalMilliseconds,6:F0}  {indexBytes,11}  {(double)indexBytes / entries,11:F1}  {(double)grownBytes / (entries + 1),12:F1}  {keys,-8}  {ids}"));
                }
            }
            finally
            {
                Directory.Delete(root, recursive: true);
            }
        }

        Console.WriteLine($"load average after: {MachineLoad.LoadAverage()}");
        return 0;
    }

    private static void Write(string root, int rows, int dims)
    {
        var started = Stopwatch.GetTimestamp();
        using var artifacts = ArtifactsRoot.Open(root, new StorageOptions { Durability = DurabilityMode.None }, NullLoggerFactory.Instance);
        var cache = artifacts.CreateOrOpenCache(Model, new CacheDescriptor { Dims = dims, Fingerprint = "", StoreOnly = true });
        var vector = new float[dims];
        const int BatchRows = 65536;
        var batch = new RowBatch(dims, BatchRows);
        for (var first = 0; first < rows; first += BatchRows)
        {
            batch.Clear();
            for (var n = first; n < Math.Min(rows, first + BatchRows); n++)
            {
                vector[0] = n;
                batch.Add(ContentKey.FromText("text " + n.ToString(CultureInfo.InvariantCulture)), Id(n), vector);
            }

            cache[VectorKind.Document].AppendAsync(batch, AppendMode.Overwrite, expectedGeneration: -1).AsTask().GetAwaiter().GetResult();
        }

        Console.Error.WriteLine($"wrote {rows} rows in {Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s");
    }

    private static (TimeSpan Elapsed, TimeSpan Cpu, long IndexBytes, long GrownBytes, int Keys, int Ids) OpenToFirstHit(string root, int newRow)
    {
        var started = Stopwatch.GetTimestamp();
        using var artifacts = ArtifactsRoot.Open(root, new StorageOptions(), NullLoggerFactory.Instance);
        var store = artifacts.OpenCache(Model)![VectorKind.Document];
        var destination = new byte[store.Dims * 4];
        var found = new bool[1];
        store.GatherByIds([Id(0)], VectorDType.Float32, destination, found);
        var elapsed = Stopwatch.GetElapsedTime(started);
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        if (!found[0]) throw new InvalidOperationException("the first row was not found after open");
        var indexBytes = store.IndexBytes;
        int keys = store.KeyCount, ids = store.IdCount;
        var batch = new RowBatch(store.Dims, 1);
        batch.Add(ContentKey.FromText("text " + newRow.ToString(CultureInfo.InvariantCulture)), Id(newRow), new float[store.Dims]);
        store.AppendAsync(batch, AppendMode.Overwrite, expectedGeneration: -1).AsTask().GetAwaiter().GetResult();
        return (elapsed, cpu, indexBytes, store.IndexBytes, keys, ids);
    }

    private static string Id(int n) => "doc-" + n.ToString(CultureInfo.InvariantCulture);
}
