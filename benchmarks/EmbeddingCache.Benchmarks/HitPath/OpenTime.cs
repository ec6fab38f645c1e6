using System.Diagnostics;
using System.Text.RegularExpressions;
using EmbeddingCache.Benchmarks.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;

namespace EmbeddingCache.Benchmarks.HitPath;

/// <summary>One start of the server on a cache of <paramref name="Rows"/> vectors (0: an empty artifacts root).</summary>
/// <param name="Rows">Vectors in the cache.</param>
/// <param name="ToListening">From process start to Kestrel's "Now listening" line.</param>
/// <param name="ToFirstHit">From process start to the first Get that finds a vector (includes .NET start-up).</param>
/// <param name="Settled">
/// The server's resident memory once its preloaded models are loaded (health SERVING) and two more seconds have
/// passed: a state every start reaches, unlike the moment of the first hit, which races with the model's loading.
/// </param>
/// <param name="ServerOpenMilliseconds">The open time the server itself logged for the cache, when it logs one.</param>
/// <param name="ServerLines">Lines the server logged about opening or its index, as it words them.</param>
public sealed record OpenRun(
    long Rows, TimeSpan ToListening, TimeSpan ToFirstHit, ProcessMemory? Settled, double? ServerOpenMilliseconds, IReadOnlyList<string> ServerLines);

/// <summary>
/// Open time and index memory: the real server started with its default settings on a cache of N vectors, timed
/// from process start to the first Get that finds a vector, and its anonymous resident memory (heaps, index)
/// once it is serving compared with that of a server on an empty root. The cache's files are read once before each start, so every
/// start sees a warm page cache.
/// </summary>
public static partial class OpenTime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(120);
    private static readonly TimeSpan SettleTime = TimeSpan.FromSeconds(2);

    /// <summary>Starts the server <paramref name="repeats"/> times on each root; <paramref name="roots"/> maps rows to a root (0: empty).</summary>
    public static async Task<IReadOnlyList<OpenRun>> MeasureAsync(
        IReadOnlyList<(long Rows, string Root)> roots, int repeats, CancellationToken cancellationToken)
    {
        var runs = new List<OpenRun>();
        for (var repeat = 0; repeat < repeats; repeat++)
        {
            foreach (var (rows, root) in roots)
            {
                if (rows > 0)
                {
                    HitDataset.WarmMetadata(root);
                }

                var run = await MeasureOnceAsync(rows, root, cancellationToken).ConfigureAwait(false);
                runs.Add(run);
                Console.WriteLine($"  open {rows,9:N0} vectors: listening {run.ToListening.TotalMilliseconds,6:F0} ms, first hit {run.ToFirstHit.TotalMilliseconds,6:F0} ms, " +
                                  $"anonymous RSS {run.Settled?.Anonymous / 1e6:F0} MB once serving");
            }
        }

        return runs;
    }

    private static async Task<OpenRun> MeasureOnceAsync(long rows, string root, CancellationToken cancellationToken)
    {
        await using var server = await EmbcacheServerProcess.StartAsync(root, cancellationToken, waitUntilServing: false).ConfigureAwait(false);
        var toListening = Stopwatch.GetElapsedTime(server.StartedAt);
        using var channel = server.OpenChannel();
        var client = new Protocol.V1.EmbeddingCache.EmbeddingCacheClient(channel);
        var request = new GetRequest { Model = HitDataset.Model, Kind = Kind.Document, Ids = { HitDataset.IdOf(Math.Max(0, rows - 1)) } };
        while (true)
        {
            try
            {
                var reply = await client.GetAsync(request, cancellationToken: cancellationToken).ConfigureAwait(false);
                if (reply.FoundCount == 1 || rows == 0)
                {
                    break;
                }
            }
            catch (RpcException) when (rows > 0 && Stopwatch.GetElapsedTime(server.StartedAt) < Deadline)
            {
                // Not open yet.
            }
            catch (RpcException) when (rows == 0)
            {
                break; // An empty root knows no cache: the call has run through the server, which is all the baseline needs.
            }

            if (Stopwatch.GetElapsedTime(server.StartedAt) > Deadline)
            {
                throw new TimeoutException($"no hit {Deadline} after starting embcache on {root}:\n{server.Log}");
            }

            await Task.Delay(2, cancellationToken).ConfigureAwait(false);
        }

        var toFirstHit = Stopwatch.GetElapsedTime(server.StartedAt);
        await server.WaitUntilServingAsync(cancellationToken).ConfigureAwait(false);
        await Task.Delay(SettleTime, cancellationToken).ConfigureAwait(false);
        var settled = ProcessMemory.Of(server.ProcessId);
        var lines = server.Log.Split('\n').Where(line => OpenOrIndexLine().IsMatch(line)).Take(5).ToArray();
        var said = lines.Select(line => ServerOpenTime().Match(line)).FirstOrDefault(match => match.Success);
        return new OpenRun(rows, toListening, toFirstHit, settled,
            said is null ? null : double.Parse(said.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), lines);
    }

    [GeneratedRegex(@"\b(index|opened|open|warm\w*)\b", RegexOptions.IgnoreCase)]
    private static partial Regex OpenOrIndexLine();

    /// <summary>The server's own figure, e.g. "Opened cache all-MiniLM-L6-v2: ... in 1262 ms".</summary>
    [GeneratedRegex(@"Opened cache .* in (\d+(?:\.\d+)?) ?ms")]
    private static partial Regex ServerOpenTime();
}
