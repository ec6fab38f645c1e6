using System.Globalization;
using System.Text;
using EmbeddingCache.Benchmarks.Infrastructure;

namespace EmbeddingCache.Benchmarks.Flood;

/// <summary>The Markdown report of the flood verb: per repetition, the good clients' latency alone and flooded, and the p99 ratio.</summary>
public static class FloodReport
{
    /// <summary>The p99 ratio the design asks for: bad load never more than doubles good clients' tail latency.</summary>
    public const double Target = 2.0;

    /// <summary>One phase: the good clients' sorted latencies in µs, the machine's load, and what the flooders sent.</summary>
    public sealed record Row(
        int Repetition, bool Flooded, double[] GetMicroseconds, double[] EmbedMicroseconds, PhaseLoad Load,
        TimeSpan ServerCpu, long FloodRequests, IReadOnlyDictionary<string, long> FloodStatuses);

    /// <summary>The nearest-rank percentile of sorted values; NaN for none.</summary>
    public static double Percentile(double[] sorted, double fraction) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(fraction * sorted.Length) - 1, 0, sorted.Length - 1)];

    /// <summary>The whole report.</summary>
    public static string Render(IReadOnlyList<Row> rows, FloodOptions options, string loadBefore, string loadAfter)
    {
        var md = new StringBuilder();
        var pairs = rows.GroupBy(r => r.Repetition)
            .Select(g => (Repetition: g.Key, Alone: g.Single(r => !r.Flooded), Flooded: g.Single(r => r.Flooded)))
            .ToList();
        var getRatios = pairs.Select(p => Percentile(p.Flooded.GetMicroseconds, 0.99) / Percentile(p.Alone.GetMicroseconds, 0.99)).ToArray();
        var embedRatios = pairs.Select(p => Percentile(p.Flooded.EmbedMicroseconds, 0.99) / Percentile(p.Alone.EmbedMicroseconds, 0.99)).ToArray();
        var getSpread = Spread.Of(getRatios);
        var embedSpread = Spread.Of(embedRatios);
        var worst = Math.Max(getSpread.Median, embedSpread.Median);

        md.AppendLine("# Flood: good clients' latency while others send oversize and invalid requests");
        md.AppendLine();
        md.AppendLine(Invariant($"Run {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC on {Environment.ProcessorCount} cores; load average before {loadBefore}, after {loadAfter}."));
        md.AppendLine();
        md.AppendLine("```sh");
        md.AppendLine($"dotnet run -c Release --project benchmarks/EmbeddingCache.Benchmarks -- flood {options.Arguments}".TrimEnd());
        md.AppendLine("```");
        md.AppendLine();
        md.AppendLine(Invariant($"**p99 flooded / alone (median of {pairs.Count} repetitions): Get {getSpread.Median:F2}x ({getSpread.Range("F2")}), ",
                                $"Embed (cached) {embedSpread.Median:F2}x ({embedSpread.Range("F2")}); target ≤ {Target:F0}x: {(worst <= Target ? "met" : "NOT met")}.**"));
        md.AppendLine();
        md.AppendLine(Invariant($"{options.GoodClients} good clients, each calling Get ({options.RowsPerCall} ids) then Embed ({options.RowsPerCall} cached texts) ",
                                $"in a loop over {options.Rows} warmed rows of all-MiniLM-L6-v2; phases of {options.PhaseSeconds} s alternate alone and flooded. ",
                                $"In flooded phases {options.Flooders} more clients, each on its own connection, send in turn and as fast as replies come ({string.Join(", ", options.Abuses)}): ",
                                $"a Put just over the {FloodBenchmark.MaxMessageBytes >> 20} MiB message limit, an Embed with model '../../etc/passwd', ",
                                $"a Put holding NaN, an Embed with 2 texts and 1 id, and an Embed of {FloodBenchmark.MaxRows + 1} texts (limit {FloodBenchmark.MaxRows}). ",
                                $"Everything runs on this one machine: the flooders' own CPU use competes with the server's, as it would for a flood from a neighbour process."));
        md.AppendLine();
        md.AppendLine("| rep | Get p50 alone | Get p50 flooded | Get p99 alone | Get p99 flooded | **Get p99 ratio** | Embed p50 alone | Embed p50 flooded | Embed p99 alone | Embed p99 flooded | **Embed p99 ratio** | good calls alone / flooded | flood requests/s | server CPU ms per call alone / flooded | CPU busy alone / flooded (others) |");
        md.AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (var i = 0; i < pairs.Count; i++)
        {
            var (repetition, alone, flooded) = pairs[i];
            md.AppendLine(Invariant(
                $"| {repetition} | {Ms(alone.GetMicroseconds, 0.5)} | {Ms(flooded.GetMicroseconds, 0.5)} | {Ms(alone.GetMicroseconds, 0.99)} | {Ms(flooded.GetMicroseconds, 0.99)} | **{getRatios[i]:F2}x** ",
                $"| {Ms(alone.EmbedMicroseconds, 0.5)} | {Ms(flooded.EmbedMicroseconds, 0.5)} | {Ms(alone.EmbedMicroseconds, 0.99)} | {Ms(flooded.EmbedMicroseconds, 0.99)} | **{embedRatios[i]:F2}x** ",
                $"| {alone.GetMicroseconds.Length + alone.EmbedMicroseconds.Length} / {flooded.GetMicroseconds.Length + flooded.EmbedMicroseconds.Length} ",
                $"| {flooded.FloodRequests / (double)options.PhaseSeconds:F0} ",
                $"| {CpuPerCall(alone, 0):F2} / {CpuPerCall(flooded, flooded.FloodRequests):F2} ",
                $"| {alone.Load.MachineBusy:P0} ({alone.Load.Others:P0}) / {flooded.Load.MachineBusy:P0} ({flooded.Load.Others:P0}) |"));
        }
        md.AppendLine();
        md.AppendLine("Latencies in ms, measured by the good clients around each call (Grpc.Net.Client, one HTTP/2 connection each). " +
                      "Server CPU per call: the server process's CPU time in the phase over every call it answered there, good and flooding. CPU busy: share of the machine's CPU time that was busy during the phase; in brackets, the share used by processes other than this benchmark and its server.");
        md.AppendLine();
        md.AppendLine("What the flooders got back, over all flooded phases:");
        md.AppendLine();
        md.AppendLine("| request | status | count |");
        md.AppendLine("| --- | --- | ---: |");
        foreach (var status in rows.SelectMany(r => r.FloodStatuses).GroupBy(s => s.Key).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var parts = status.Key.Split(' ', 2);
            md.AppendLine(Invariant($"| {parts[0]} | {parts[1]} | {status.Sum(s => s.Value)} |"));
        }
        return md.ToString();
    }

    /// <summary>The server's CPU time over every call it answered in the phase, good and flooding, in ms.</summary>
    private static double CpuPerCall(Row row, long floodRequests) =>
        row.ServerCpu.TotalMilliseconds / Math.Max(1, row.GetMicroseconds.Length + row.EmbedMicroseconds.Length + floodRequests);

    private static string Ms(double[] sortedMicroseconds, double fraction) => Invariant($"{Percentile(sortedMicroseconds, fraction) / 1000:F2}");

    private static string Invariant(params FormattableString[] parts) => string.Concat(parts.Select(part => part.ToString(CultureInfo.InvariantCulture)));
}
