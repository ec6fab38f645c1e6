using System.Diagnostics;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>The files are the user's data: numpy and msgpack must read them with no server (invariant N1).</summary>
public sealed class NumpyCompatibilityTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 8;
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    [Fact]
    public async Task Debian_python_has_numpy_and_msgpack()
    {
        using var process = Process.Start(NumpyReader.StartInfo("dump", _artifacts.Root))!;
        string stderr = await process.StandardError.ReadToEndAsync();
        string stdout = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        NumpyReader.FailIfMissing(process.ExitCode, stderr);
        Assert.Equal(0, process.ExitCode);
        output.WriteLine($"numpy {(string?)JsonNode.Parse(stdout)!["numpy"]}");
    }

    [Theory]
    [InlineData(VectorDType.Float32)]
    [InlineData(VectorDType.Float16)]
    public async Task Numpy_reads_exactly_what_was_written(VectorDType dtype)
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 6);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims, dtype))[VectorKind.Document];
        var batch = new RowBatch(Dims, 20);
        var expected = new List<(ContentKey? Key, string? Id, float[] Vector)>();
        for (int n = 0; n < 15; n++)
        {
            // Every combination of key and id, and ids that need more than a fixstr.
            ContentKey? key = n % 3 == 2 ? null : Rows.Key(n);
            string? id = n % 3 == 1 ? null : n == 4 ? new string('é', 40) + "文書" : Rows.Id(n);
            batch.Add(key, id, Rows.Vector(n, Dims));
            expected.Add((key, id, Rows.Vector(n, Dims)));
        }

        await store.AppendAsync(batch, AppendMode.Overwrite, -1);

        JsonObject dump = await NumpyReader.DumpAsync(_artifacts.KindDirectory("mini", VectorKind.Document));
        JsonArray segments = dump["segments"]!.AsArray();
        var layout = new NpyLayout(Dims, dtype);
        Assert.Equal([6, 6, 3], segments.Select(s => (int)s!["shape"]![0]!));
        Assert.All(segments, s => Assert.Equal(Dims, (int)s!["shape"]![1]!));
        Assert.All(segments, s => Assert.Equal(dtype.NpyDescr(), (string?)s!["dtype"]));
        Assert.Equal(layout.FileLength(6), (long)segments[0]!["file_size"]!);
        Assert.Equal(layout.FileLength(6), (long)segments[1]!["file_size"]!);
        Assert.Equal(3, (int)segments[2]!["sidecar_records"]!);

        var rows = NumpyReader.RowsOf(dump);
        Assert.Equal(expected.Count, rows.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            Assert.Equal(expected[i].Key?.ToString(), rows[i].Key);
            Assert.Equal(expected[i].Id, rows[i].Id);
            Assert.Equal(expected[i].Vector, rows[i].Vector);
        }
    }

    [Fact]
    public async Task Numpy_only_ever_sees_whole_committed_rows_while_appends_run()
    {
        const int TargetIterations = 25;
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 50);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        string directory = _artifacts.KindDirectory("mini", VectorKind.Query);
        string stopFile = Path.Combine(_artifacts.Root, "stop");
        await store.AppendAsync(Rows.Batch(Dims, [0]), AppendMode.Overwrite, -1);

        using var watcher = Process.Start(NumpyReader.StartInfo("watch", directory, stopFile, Dims.ToString(System.Globalization.CultureInfo.InvariantCulture)))!;
        int iterations = 0;
        string? summary = null;
        watcher.OutputDataReceived += (_, e) =>
        {
            if (e.Data?.StartsWith("iteration ", StringComparison.Ordinal) == true)
            {
                Interlocked.Increment(ref iterations);
            }
            else if (e.Data is not null)
            {
                summary = e.Data;
            }
        };
        watcher.BeginOutputReadLine();
        Task<string> stderr = watcher.StandardError.ReadToEndAsync();

        // Keep appending, in batches of odd sizes that straddle segment ends, until numpy has looked often.
        int next = 1;
        var deadline = Stopwatch.StartNew();
        while ((Volatile.Read(ref iterations) < TargetIterations || next < 400) && !watcher.HasExited && deadline.Elapsed < TimeSpan.FromMinutes(3))
        {
            int size = 1 + (next % 7);
            await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(next, size)), AppendMode.Overwrite, -1);
            next += size;
        }

        await File.WriteAllTextAsync(stopFile, "");
        await watcher.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        string errors = await stderr;
        NumpyReader.FailIfMissing(watcher.ExitCode, errors);
        Assert.True(watcher.ExitCode == 0, $"numpy saw a row that was not whole and committed: {errors}");
        Assert.True(Volatile.Read(ref iterations) >= TargetIterations, $"numpy made only {iterations} passes while rows were appended");
        JsonNode result = JsonNode.Parse(summary!)!;
        Assert.Equal(next, (int)result["max_rows"]!); // the last pass, after the stop file, sees every row
        output.WriteLine($"{next} rows appended while numpy made {iterations} passes");
    }
}
