using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using EmbeddingCache.Engine;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Storage;
using Grpc.Core;

namespace EmbeddingCache.Server.Cli;

/// <summary>
/// <c>warm MODEL CORPUS</c>: embeds every row of a corpus so that later runs are all hits, against a running
/// server (streamed) or the artifacts root directly. Resumable: a rerun computes only what is missing.
/// </summary>
internal static class WarmVerb
{
    /// <summary>Exit code after Ctrl+C, as shells report SIGINT.</summary>
    private const int Interrupted = 130;

    public static Command Create()
    {
        var model = CliOptions.Model("The model to embed with.");
        var corpus = new Argument<FileInfo>("corpus")
        {
            Description = "BEIR corpus.jsonl (_id, title, text) or queries.jsonl, any JSONL, TSV (id TAB text), each maybe gzipped, or Parquet.",
        };
        var reading = new CorpusOptions();
        var server = CliOptions.Server();
        var artifacts = CliOptions.Artifacts();
        var batch = new Option<int>("--batch") { Description = "Texts per request.", DefaultValueFactory = _ => 64 };
        var command = new Command("warm", "Embed a whole corpus into the cache, with progress; the file is checked whole first, and a rerun computes only what is missing.")
        {
            model, corpus, server, artifacts, batch,
        };
        foreach (var option in reading.All) command.Options.Add(option);
        command.SetAction(async (parse, cancel) =>
        {
            var file = parse.GetValue(corpus)!;
            if (!file.Exists) return CliOptions.Fail($"no corpus file {file.FullName}");
            var batchSize = parse.GetValue(batch);
            if (batchSize < 1) return CliOptions.Fail("--batch must be at least 1");
            var root = CliOptions.DirectRoot(parse, server, artifacts, out var conflict);
            if (conflict is not null) return CliOptions.Fail(conflict);
            var kind = reading.KindOf(parse, file);
            CorpusReader reader;
            CorpusSummary summary;
            try
            {
                // The whole file is read once before anything is stored: a bad line 900,000 must not leave 899,999 rows behind.
                reader = reading.Open(parse, file);
                Console.WriteLine($"{file.Name}: {reader.Description}: checking every row before anything is stored");
                summary = await reader.ValidateAsync(cancel);
            }
            catch (Exception e) when (e is InvalidDataException or IOException)
            {
                return CliOptions.Fail(e.Message);
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                Console.WriteLine($"{file.Name}: interrupted while checking: nothing stored");
                return Interrupted;
            }
            var what = $"{reader.Description}, {summary.Rows:N0} rows as {(kind == VectorKind.Query ? "queries" : "documents")}, " +
                          (summary.HasIds ? "stored under their ids" : "no ids (stored by text alone)");
            var request = new WarmRequest(parse.GetValue(model)!, kind, reader, batchSize);
            using var progress = new WarmProgress(file.Name, what, summary.Rows, root is null ? null : Path.Combine(root, ArtifactsRoot.LogsFolderName));
            try
            {
                var counts = root is null
                    ? await WarmThroughServerAsync(parse.GetValue(server)!, request, progress, cancel)
                    : await WarmDirectlyAsync(root, request, progress, cancel);
                progress.Finish(counts);
                return 0;
            }
            catch (Exception e) when (cancel.IsCancellationRequested && e is OperationCanceledException or RpcException)
            {
                progress.Interrupted();
                return Interrupted;
            }
            catch (RpcException e)
            {
                progress.Failed($"{e.StatusCode}: {e.Status.Detail}");
                return 1;
            }
            catch (Exception e) when (e is CacheRequestException or InvalidDataException or IOException)
            {
                progress.Failed(e.Message);
                return 1;
            }
        });
        return command;
    }

    /// <summary>One EmbedStream call: batches go out while earlier ones are computed, answers come back in order.</summary>
    private static async Task<WarmCounts> WarmThroughServerAsync(string address, WarmRequest request, WarmProgress progress, CancellationToken cancel)
    {
        using var client = new Client.EmbeddingCacheClient(address);
        using var call = client.EmbedStream(request.Model, cancel);
        var sender = Task.Run(async () =>
        {
            await foreach (var (ids, texts) in request.Batches(cancel))
            {
                var message = new EmbedRequest { Model = request.Model, Kind = CliOptions.ToWire(request.Kind), Texts = { texts } };
                if (ids is not null) message.Ids.AddRange(ids);
                await call.RequestStream.WriteAsync(message, cancel);
            }
            await call.RequestStream.CompleteAsync();
        }, cancel);
        var counts = new WarmCounts();
        await foreach (var response in call.ResponseStream.ReadAllAsync(cancel))
        {
            counts = counts.Add((int)response.CachedCount, (int)response.ComputedCount);
            progress.Report(counts);
        }
        await sender;
        return counts;
    }

    /// <summary>No server: the engine runs in this process on the artifacts root (taking its writer lock).</summary>
    private static async Task<WarmCounts> WarmDirectlyAsync(string root, WarmRequest request, WarmProgress progress, CancellationToken cancel)
    {
        await using var local = LocalEngine.Open(root);
        var engine = local.Engine;
        var counts = new WarmCounts();
        // A few batches in flight keep the batcher's queue full while answers are counted in order.
        var inFlight = new Queue<Task<LookupResult>>();
        await foreach (var (ids, texts) in request.Batches(cancel))
        {
            inFlight.Enqueue(engine.EmbedAsync(new EmbedCommand(request.Model, request.Kind, texts, ids ?? [], VectorDType.Float32, CacheOnly: false), cancel));
            if (inFlight.Count >= EmbeddingCacheEngine.StreamWindow) counts = Count(await inFlight.Dequeue());
        }
        while (inFlight.Count > 0) counts = Count(await inFlight.Dequeue());
        return counts;

        WarmCounts Count(LookupResult result)
        {
            using var rows = result;
            counts = counts.Add(result.CountOf(Engine.RowSource.Cached), result.CountOf(Engine.RowSource.Computed));
            progress.Report(counts);
            return counts;
        }
    }

    private sealed record WarmRequest(string Model, VectorKind Kind, CorpusReader Reader, int BatchSize)
    {
        /// <summary>Batches of texts with their ids (null when the corpus has none: the reader allows all or none).</summary>
        public async IAsyncEnumerable<(string[]? Ids, string[] Texts)> Batches([EnumeratorCancellation] CancellationToken cancel)
        {
            await foreach (var chunk in Reader.RowsAsync(cancel).Chunk(BatchSize).WithCancellation(cancel))
            {
                yield return (chunk[0].Id is null ? null : chunk.Select(row => row.Id!).ToArray(), chunk.Select(row => row.Text).ToArray());
            }
        }
    }
}

/// <summary>Rows answered so far, and how.</summary>
internal readonly record struct WarmCounts(long Cached, long Computed)
{
    public long Rows => Cached + Computed;

    public WarmCounts Add(int cached, int computed) => new(Cached + cached, Computed + computed);
}

/// <summary>
/// Progress as a person reads it: rows done of the total, rows/s, ETA; a line at most every second (or at
/// the end), on the console and, when the verb works on a root directly, in a log file under its logs/.
/// </summary>
internal sealed class WarmProgress : IDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);
    private readonly string corpus;
    private readonly long total;
    private readonly StreamWriter? log;
    private readonly Stopwatch clock = Stopwatch.StartNew();
    private TimeSpan? lastReport;
    private WarmCounts latest;

    /// <param name="corpus">The corpus file's name, which begins every progress line.</param>
    /// <param name="what">What the corpus holds and how it is stored, the first line written.</param>
    /// <param name="total">Rows in the corpus, which the percentage and ETA count against.</param>
    /// <param name="logDirectory">Where the log file goes; null (a run through a server) writes none on this side.</param>
    public WarmProgress(string corpus, string what, long total, string? logDirectory)
    {
        this.corpus = corpus;
        this.total = total;
        if (logDirectory is not null)
        {
            Directory.CreateDirectory(logDirectory);
            var logPath = Path.Combine(logDirectory, $"warm-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Environment.ProcessId}.log");
            log = new StreamWriter(logPath, append: false) { AutoFlush = true };
        }
        Write(what);
    }

    public void Report(WarmCounts counts)
    {
        latest = counts;
        if (lastReport is { } last && clock.Elapsed - last < Interval) return;
        lastReport = clock.Elapsed;
        var rate = counts.Rows / Math.Max(clock.Elapsed.TotalSeconds, 1e-3);
        var percent = total == 0 ? 100 : 100.0 * counts.Rows / total;
        var eta = rate > 0 ? TimeSpan.FromSeconds(Math.Max(0, total - counts.Rows) / rate).ToString(@"hh\:mm\:ss", CultureInfo.InvariantCulture) : "?";
        Write($"[{Bar(percent)}] {percent,5:F1}% {counts.Rows:N0}/{total:N0} rows, {rate:N0} rows/s, ETA {eta} ({counts.Computed:N0} computed, {counts.Cached:N0} cached)");
    }

    public void Finish(WarmCounts counts) =>
        Write($"done: {counts.Rows:N0} rows in {clock.Elapsed.TotalSeconds:F1} s: {counts.Computed:N0} computed, {counts.Cached:N0} already cached");

    public void Interrupted() =>
        Write($"interrupted after {latest.Rows:N0} rows ({latest.Computed:N0} computed): run the same command again to finish, only the missing rows are computed");

    public void Failed(string reason) => Write($"failed after {latest.Rows:N0} rows: {reason}");

    private void Write(string line)
    {
        Console.WriteLine($"{corpus}: {line}");
        log?.WriteLine($"{DateTime.UtcNow:O} {line}");
    }

    private static string Bar(double percent)
    {
        var filled = (int)Math.Round(percent / 5);
        return new string('#', filled) + new string('.', 20 - filled);
    }

    public void Dispose() => log?.Dispose();
}
