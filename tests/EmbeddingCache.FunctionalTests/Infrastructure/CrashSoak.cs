using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>Settings of one crash soak; the defaults are the suite's short run.</summary>
public sealed class CrashSoakOptions
{
    /// <summary>SIGKILLs of the server; the suite runs 50 (EMBCACHE_CRASH_KILLS raises it).</summary>
    public int Kills { get; init; } = 50;

    /// <summary>Seeds every random choice (what each client sends, when the kill comes), so a failure can be rerun.</summary>
    public int Seed { get; init; } = 7;

    /// <summary>Concurrent clients, each mixing Put, Embed, Get and Invalidate.</summary>
    public int Clients { get; init; } = 3;

    /// <summary>The soak stops killing after this long even if it has not reached <see cref="Kills"/>, then checks.</summary>
    public TimeSpan TimeLimit { get; init; } = TimeSpan.FromMinutes(20);

    /// <summary>Small segments, so that kills also land while segments are sealed and new ones started.</summary>
    public int SegmentRows { get; init; } = 64;

    /// <summary>
    /// What the crash does after the SIGKILL, given the crash's number (from 0): nothing by default (the page cache
    /// survives a killed process); a power cut (<see cref="PowerCutDisk"/>) also drops what was not made durable.
    /// </summary>
    public Func<int, Task>? AfterKill { get; init; }

    /// <summary>The crash's name in the report.</summary>
    public string CrashName { get; init; } = "kill -9";
}

/// <summary>
/// Qdrant-crasher-style soak of the real server: several clients send mixed Put/Embed/Get/Invalidate load,
/// the server is killed with SIGKILL at a seeded random moment, restarted, and what it serves is checked against
/// the clients' own record (<see cref="SoakLedger"/>): nothing acknowledged missing, nothing phantom, no stale or
/// duplicated row, nothing zero, invalidations honoured; after every kill numpy loads every file as the crash left it.
/// </summary>
public sealed class CrashSoak(string artifactsDirectory, Func<string[], Task<ServerProcess>> startServer, CrashSoakOptions options)
{
    /// <summary>Put by ids into this store-only model.</summary>
    public const string StoreOnly = "soak-external";

    private const int Dims = 12;
    private const int GetChunk = 4096;
    private static readonly TimeSpan CallDeadline = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan LoadDeadline = TimeSpan.FromSeconds(120);
    private static readonly string PutTarget = $"{StoreOnly}/document";
    private static readonly string EmbedTarget = $"{Wire.MiniLM}/document";

    private readonly SoakLedger ledger = new();
    private readonly CrashSoakReport report = new();
    private int acknowledgedThisRound;

    /// <summary>Runs the soak; throws on the first violation, with the seed and the server's log in the message.</summary>
    public async Task<CrashSoakReport> RunAsync()
    {
        var watch = Stopwatch.StartNew();
        var random = new Random(options.Seed);
        report.Seed = options.Seed;
        report.CrashName = options.CrashName;
        report.Clients = options.Clients;
        string[] serverArgs = [$"--EmbeddingCache:Storage:SegmentRows={options.SegmentRows}"];
        var clientRandoms = Enumerable.Range(0, options.Clients).Select(_ => new Random(random.Next())).ToArray();
        var clientRows = Enumerable.Range(0, options.Clients).Select(_ => new ClientRows()).ToArray();

        while (report.Kills < options.Kills && watch.Elapsed < options.TimeLimit)
        {
            var restart = Stopwatch.StartNew();
            var server = await startServer(serverArgs);
            report.RestartTime += restart.Elapsed;
            await VerifyAsync(server);
            if (report.Kills == 0) await CreateStoreOnlyModelAsync(server);

            Volatile.Write(ref acknowledgedThisRound, 0);
            int killAfterAcknowledged = 1 + random.Next(40);
            int killDelayMs = random.Next(150);
            var killed = new CancellationTokenSource();
            var clients = Enumerable.Range(0, options.Clients)
                .Select(c => Task.Run(() => ClientLoopAsync(server, c, clientRandoms[c], clientRows[c], killed.Token)))
                .ToArray();

            // The kill lands at a seeded moment in the load: after some acknowledged calls, a little later still.
            var loadStarted = Stopwatch.StartNew();
            while (Volatile.Read(ref acknowledgedThisRound) < killAfterAcknowledged)
            {
                if (clients.FirstOrDefault(c => c.IsFaulted) is { } failed) await failed;
                if (loadStarted.Elapsed > LoadDeadline) throw new TimeoutException($"no load acknowledged in {LoadDeadline}:\n{server.Log}");
                await Task.Delay(5);
            }
            await Task.Delay(killDelayMs);
            await killed.CancelAsync();
            await server.KillAsync();
            await Task.WhenAll(clients);
            if (options.AfterKill is { } afterKill) await afterKill(report.Kills);
            report.Kills++;
            var unexpected = server.ErrorLines();
            if (unexpected.Count > 0) throw new InvalidOperationException($"the server logged errors before the kill:\n{string.Join('\n', unexpected)}");

            // The files exactly as the crash left them: numpy loads each, and holds only rows some client sent.
            var fileCheck = Stopwatch.StartNew();
            CheckFiles(await Python.RunAsync("read_cache_files.py", artifactsDirectory));
            report.FileCheckTime += fileCheck.Elapsed;
        }

        var final = await startServer(serverArgs);
        await VerifyAsync(final);
        await final.StopAsync();
        CheckFiles(await Python.RunAsync("read_cache_files.py", artifactsDirectory));
        report.StoppedByTimeLimit = report.Kills < options.Kills;
        report.Duration = watch.Elapsed;
        foreach (var target in new[] { PutTarget, EmbedTarget })
        {
            report.Ledger[target] = ledger.Counts(target);
        }
        return report;
    }

    private async Task CreateStoreOnlyModelAsync(ServerProcess server)
    {
        var rows = Wire.Pack(Wire.RandomRows(new Random(options.Seed), 1, Dims), Dims);
        long sent = ledger.Tick();
        await server.Client.PutAsync(new PutRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { "seed-row" }, Vectors = rows });
        ledger.RecordWrite(PutTarget, "seed-row", Wire.Row(rows, 0), sent, ledger.Tick(), acknowledged: true);
    }

    private async Task ClientLoopAsync(ServerProcess server, int client, Random random, ClientRows rows, CancellationToken killed)
    {
        while (!killed.IsCancellationRequested)
        {
            int dice = random.Next(100);
            try
            {
                if (dice < 45) await PutAsync(server, client, random, rows);
                else if (dice < 60) await EmbedAsync(server, client, random, rows);
                else if (dice < 98) await GetAsync(server, random, rows);
                else await InvalidateAsync(server, random);
            }
            catch (RpcException e) when (killed.IsCancellationRequested)
            {
                _ = e; // the server died under this call: the ledger holds it as unknown
                return;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.DeadlineExceeded)
            {
                throw new TimeoutException($"client {client}: a call under load got no reply in {CallDeadline} (seed {options.Seed})\n{await HangReport.DescribeAsync(server)}\n{server.Log}", e);
            }
            Interlocked.Increment(ref acknowledgedThisRound);
        }
    }

    private async Task PutAsync(ServerProcess server, int client, Random random, ClientRows rows)
    {
        int count = 1 + random.Next(32);
        var ids = new HashSet<string>();
        while (ids.Count < count)
        {
            // Mostly new ids, some rewrites of this client's own: the newest acknowledged write must win.
            ids.Add(rows.Ids.Count > 0 && random.Next(10) < 3
                ? rows.Ids[random.Next(rows.Ids.Count)]
                : $"c{client}-{rows.Ids.Count + ids.Count}");
        }
        var idList = ids.ToArray();
        foreach (var id in idList) if (!rows.IdSet.Contains(id)) rows.Add(id);
        var vectors = Wire.Pack(Wire.RandomRows(random, count, Dims), Dims);
        long sent = ledger.Tick();
        bool acknowledged = false;
        try
        {
            await server.Client.PutAsync(
                new PutRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { idList }, Vectors = vectors },
                deadline: DateTime.UtcNow + CallDeadline);
            acknowledged = true;
        }
        finally
        {
            long ended = ledger.Tick();
            for (int i = 0; i < count; i++) ledger.RecordWrite(PutTarget, idList[i], Wire.Row(vectors, i), sent, ended, acknowledged);
            if (acknowledged) Interlocked.Add(ref report.PutRowsAcknowledged, count);
        }
    }

    private async Task EmbedAsync(ServerProcess server, int client, Random random, ClientRows rows)
    {
        int count = 1 + random.Next(4);
        var texts = new HashSet<string>();
        while (texts.Count < count)
        {
            // New texts are computed and written back; earlier ones are hits, or computed anew after an Invalidate.
            texts.Add(rows.Texts.Count > 0 && random.Next(10) < 4
                ? rows.Texts[random.Next(rows.Texts.Count)]
                : Wire.Texts(seed: random.Next(), count: 1, prefix: $"soak c{client}")[0]);
        }
        var textList = texts.ToArray();
        foreach (var text in textList) if (!rows.TextSet.Contains(text)) rows.AddText(text);
        long sent = ledger.Tick();
        EmbedResponse? reply = null;
        try
        {
            reply = await server.Client.EmbedAsync(
                new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { textList } },
                deadline: DateTime.UtcNow + CallDeadline);
        }
        finally
        {
            long ended = ledger.Tick();
            for (int i = 0; i < count; i++)
            {
                if (reply is null)
                {
                    ledger.RecordWrite(EmbedTarget, textList[i], vector: null, sent, ended, acknowledged: false);
                }
                else if (reply.Sources[i] == RowSource.Computed)
                {
                    ledger.RecordWrite(EmbedTarget, textList[i], Wire.Row(reply.Vectors, i), sent, ended, acknowledged: true);
                    Interlocked.Increment(ref report.EmbedRowsComputed);
                }
                else
                {
                    CheckServedDuringLoad(EmbedTarget, textList[i], Wire.Row(reply.Vectors, i));
                    Interlocked.Increment(ref report.EmbedRowsCached);
                }
            }
        }
    }

    private async Task GetAsync(ServerProcess server, Random random, ClientRows rows)
    {
        bool byIds = rows.Ids.Count > 0 && (rows.Texts.Count == 0 || random.Next(3) > 0);
        var source = byIds ? rows.Ids : rows.Texts;
        if (source.Count == 0) return;
        var pick = Enumerable.Range(0, 1 + random.Next(64)).Select(_ => source[random.Next(source.Count)]).Distinct().ToArray();
        var request = new GetRequest { Model = byIds ? StoreOnly : Wire.MiniLM, Kind = Kind.Document };
        if (byIds) request.Ids.AddRange(pick);
        else request.Texts.AddRange(pick);
        var reply = await server.Client.GetAsync(request, deadline: DateTime.UtcNow + CallDeadline);
        for (int i = 0; i < pick.Length; i++)
        {
            if (reply.Sources[i] == RowSource.Cached) CheckServedDuringLoad(byIds ? PutTarget : EmbedTarget, pick[i], Wire.Row(reply.Vectors, i));
        }
        Interlocked.Add(ref report.GetRowsRead, pick.Length);
    }

    private async Task InvalidateAsync(ServerProcess server, Random random)
    {
        bool storeOnly = random.Next(4) > 0;
        string target = storeOnly ? PutTarget : EmbedTarget;
        long sent = ledger.Tick();
        bool acknowledged = false;
        try
        {
            await server.Client.InvalidateAsync(
                new InvalidateRequest { Model = storeOnly ? StoreOnly : Wire.MiniLM, Kind = Kind.Document },
                deadline: DateTime.UtcNow + CallDeadline);
            acknowledged = true;
        }
        finally
        {
            ledger.RecordInvalidation(target, sent, ledger.Tick(), acknowledged);
        }
    }

    /// <summary>While others write, a found row can only be one some client sent for it.</summary>
    private void CheckServedDuringLoad(string target, string row, byte[] vector)
    {
        if (!ledger.WasEverSent(target, row, vector))
        {
            throw new InvalidOperationException($"{target} '{row}' served a vector no client sent for it, during the load (seed {options.Seed})");
        }
    }

    /// <summary>After a restart, with no call in flight: every row ever written is in a state the ledger allows.</summary>
    private async Task VerifyAsync(ServerProcess server)
    {
        foreach (var (target, model, byIds) in new[] { (PutTarget, StoreOnly, true), (EmbedTarget, Wire.MiniLM, false) })
        {
            var rows = ledger.Rows(target);
            for (int start = 0; start < rows.Count; start += GetChunk)
            {
                var chunk = rows.Skip(start).Take(GetChunk).ToArray();
                var request = new GetRequest { Model = model, Kind = Kind.Document };
                if (byIds) request.Ids.AddRange(chunk);
                else request.Texts.AddRange(chunk);
                GetResponse? reply;
                try
                {
                    reply = await server.Client.GetAsync(request, deadline: DateTime.UtcNow + CallDeadline);
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
                {
                    reply = null; // the store-only model was never created: every row is missing
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.DeadlineExceeded)
                {
                    string hang = await HangReport.DescribeAsync(server, (invoker, deadline) =>
                        new EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient(invoker).GetAsync(request, deadline: deadline).ResponseAsync);
                    throw new TimeoutException($"after kill {report.Kills} (seed {options.Seed}): the verifying Get of {chunk.Length} rows got no reply in {CallDeadline}\n{hang}\n{server.Log}", e);
                }
                for (int i = 0; i < chunk.Length; i++)
                {
                    byte[]? served = reply is not null && reply.Sources[i] == RowSource.Cached ? Wire.Row(reply.Vectors, i) : null;
                    if (ledger.Judge(target, chunk[i], served, out bool goneByInvalidate) is { } problem)
                    {
                        throw new InvalidOperationException($"after kill {report.Kills} (seed {options.Seed}): {problem}\n{server.Log}");
                    }
                    report.RowsChecked++;
                    if (served is not null) report.RowsPresentChecked++;
                    if (goneByInvalidate) report.RowsGoneByInvalidateChecked++;
                }
            }
        }
    }

    /// <summary>
    /// The rows in the files (numpy and msgpack read them; read_cache_files.py already failed on a file numpy cannot
    /// load, a zero or non-finite row): each is a vector some client sent for its id or text, none more often than sent.
    /// </summary>
    private void CheckFiles(string json)
    {
        var files = JsonDocument.Parse(json).RootElement;
        report.FileChecks++;
        if (files.TryGetProperty(PutTarget, out var putRows))
        {
            var perId = new Dictionary<string, int>();
            foreach (var row in putRows.EnumerateArray())
            {
                string id = row[1].GetString() ?? throw new InvalidOperationException($"{PutTarget}: a row without its id");
                byte[] vector = Convert.FromHexString(row[2].GetString()!);
                if (!ledger.WasEverSent(PutTarget, id, vector)) throw new InvalidOperationException($"{PutTarget}: file row for '{id}' holds a vector no client sent (seed {options.Seed})");
                perId[id] = perId.GetValueOrDefault(id) + 1;
            }
            foreach (var (id, count) in perId)
            {
                if (count > ledger.WritesSent(PutTarget, id)) throw new InvalidOperationException($"{PutTarget}: '{id}' has {count} rows on disk but was sent {ledger.WritesSent(PutTarget, id)} times");
            }
            report.FileRowsChecked += perId.Values.Sum();
        }
        if (files.TryGetProperty(EmbedTarget, out var embedRows))
        {
            var keys = new HashSet<string>();
            var sentKeys = ledger.Rows(EmbedTarget).ToDictionary(Wire.ContentKeyHex);
            foreach (var row in embedRows.EnumerateArray())
            {
                string key = row[0].GetString()!;
                if (!sentKeys.TryGetValue(key, out var text)) throw new InvalidOperationException($"{EmbedTarget}: file row with key {key} that no client sent (seed {options.Seed})");
                if (!keys.Add(key)) throw new InvalidOperationException($"{EmbedTarget}: text '{text}' has two rows in one generation of files; write-back stores a key once");
                if (!ledger.WasEverSent(EmbedTarget, text, Convert.FromHexString(row[2].GetString()!))) throw new InvalidOperationException($"{EmbedTarget}: '{text}' holds a vector it was never given");
            }
            report.FileRowsChecked += keys.Count;
        }
    }

    /// <summary>What one client has written so far, to pick rewrites and reads from.</summary>
    private sealed class ClientRows
    {
        public List<string> Ids { get; } = [];

        public HashSet<string> IdSet { get; } = [];

        public List<string> Texts { get; } = [];

        public HashSet<string> TextSet { get; } = [];

        public void Add(string id)
        {
            Ids.Add(id);
            IdSet.Add(id);
        }

        public void AddText(string text)
        {
            Texts.Add(text);
            TextSet.Add(text);
        }
    }
}

/// <summary>The figures of one soak, printed for the test output and written beside the test results.</summary>
public sealed class CrashSoakReport
{
    public int Seed { get; set; }

    public int Clients { get; set; }

    public int Kills { get; set; }

    public string CrashName { get; set; } = "";

    public bool StoppedByTimeLimit { get; set; }

    public TimeSpan Duration { get; set; }

    public long PutRowsAcknowledged;

    public long EmbedRowsComputed;

    public long EmbedRowsCached;

    public long GetRowsRead;

    public long RowsChecked { get; set; }

    public long RowsPresentChecked { get; set; }

    public long RowsGoneByInvalidateChecked { get; set; }

    public long FileRowsChecked { get; set; }

    public int FileChecks { get; set; }

    /// <summary>Time spent starting servers until SERVING (recovery included), over all kills.</summary>
    public TimeSpan RestartTime { get; set; }

    /// <summary>Time spent reading every file with numpy after the kills.</summary>
    public TimeSpan FileCheckTime { get; set; }

    public Dictionary<string, (int AcknowledgedWrites, int UnknownWrites, int AcknowledgedInvalidations, int UnknownInvalidations)> Ledger { get; } = [];

    public override string ToString()
    {
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        text.AppendLine(c, $"crash soak: {Kills} {CrashName} survived in {Duration.TotalSeconds:F0} s ({Clients} clients, seed {Seed}{(StoppedByTimeLimit ? ", stopped by the time limit" : "")})");
        text.AppendLine(c, $"rows checked after restarts: {RowsChecked} ({RowsPresentChecked} present byte for byte, {RowsGoneByInvalidateChecked} gone because of an acknowledged Invalidate)");
        text.AppendLine(c, $"file rows checked with numpy/msgpack: {FileRowsChecked} over {FileChecks} reads of every file, all loading in numpy, none zero, none phantom");
        text.AppendLine(c, $"acknowledged: {PutRowsAcknowledged} Put rows, {EmbedRowsComputed} Embed rows computed and written back, {EmbedRowsCached} Embed rows served from cache, {GetRowsRead} Get rows read");
        text.AppendLine(c, $"time: {RestartTime.TotalSeconds:F0} s restarting to SERVING ({RestartTime.TotalMilliseconds / Math.Max(1, Kills):F0} ms each), {FileCheckTime.TotalSeconds:F0} s reading files with numpy");
        foreach (var (target, counts) in Ledger)
        {
            text.AppendLine(c, $"{target}: {counts.AcknowledgedWrites} row writes acknowledged, {counts.UnknownWrites} cut by a kill; " +
                               $"{counts.AcknowledgedInvalidations} Invalidates acknowledged, {counts.UnknownInvalidations} cut by a kill");
        }
        return text.ToString();
    }
}
