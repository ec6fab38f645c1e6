using System.Collections.Concurrent;
using System.Diagnostics;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>Invariant N2: a writer process killed with SIGKILL at an arbitrary point loses no acknowledged row.</summary>
public sealed class CrashTests(ITestOutputHelper output) : IDisposable
{
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    [Fact]
    public async Task A_killed_writer_loses_no_acknowledged_row_and_leaves_loadable_files()
    {
        var acknowledged = new ConcurrentDictionary<int, bool>();
        for (int cycle = 0; cycle < 4; cycle++)
        {
            int first = cycle * 1_000_000;
            int target = acknowledged.Count + 150 + (cycle * 37);
            await RunAndKillAsync(first, acknowledged, target);
            using ArtifactsRoot root = _artifacts.Open(segmentRows: Program.SegmentRows);
            VectorStore store = root.OpenCache("crash")![VectorKind.Document];
            int[] numbers = [.. acknowledged.Keys.Order()];
            float[]?[] vectors = Rows.GatherIds(store, [.. numbers.Select(Rows.Id)]);
            for (int i = 0; i < numbers.Length; i++)
            {
                Assert.True(vectors[i] is not null, $"cycle {cycle}: acknowledged row {numbers[i]} is missing after the kill");
                Assert.Equal(Rows.Vector(numbers[i], Program.Dims), vectors[i]);
            }

            Assert.True(store.RowCount >= numbers.Length);
            Assert.Equal(0, _artifacts.Logs.Count("QuarantinedFile"));
            var dumped = NumpyReader.RowsOf(await NumpyReader.DumpAsync(_artifacts.KindDirectory("crash", VectorKind.Document)));
            Assert.Equal(store.RowCount, dumped.Count);
            Assert.All(dumped, row => Assert.Equal(Rows.Vector(int.Parse(row.Id![1..], System.Globalization.CultureInfo.InvariantCulture), Program.Dims), row.Vector));
            output.WriteLine($"cycle {cycle}: {numbers.Length} acknowledged, {store.RowCount} rows on disk, {_artifacts.Logs.Count("SegmentTailTruncated")} tails trimmed so far");
        }
    }

    private async Task RunAndKillAsync(int first, ConcurrentDictionary<int, bool> acknowledged, int target)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in (string[])[typeof(Program).Assembly.Location, "crash-writer", _artifacts.Root, first.ToString(System.Globalization.CultureInfo.InvariantCulture)])
        {
            start.ArgumentList.Add(argument);
        }
        using var writer = Process.Start(start)!;
        Task<string> errors = writer.StandardError.ReadToEndAsync();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            while (acknowledged.Count < target)
            {
                string? line = await writer.StandardOutput.ReadLineAsync(timeout.Token);
                if (line is null)
                {
                    Assert.Fail($"the writer exited on its own: {await errors}"); // awaited only here: stderr ends when the writer does
                }

                if (line.StartsWith("ack ", StringComparison.Ordinal))
                {
                    acknowledged[int.Parse(line.AsSpan(4), System.Globalization.CultureInfo.InvariantCulture)] = true;
                }
            }
        }
        finally
        {
            writer.Kill(); // SIGKILL: no finally blocks, no flush, no unlock but the kernel's
            await writer.WaitForExitAsync();
        }
    }
}
