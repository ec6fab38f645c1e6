using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary><c>embcache warm</c>: a corpus warm-up that shows progress, survives Ctrl+C and resumes.</summary>
public sealed partial class WarmVerbTests(ITestOutputHelper output) : ServerTest(output)
{
    private const int Lines = 10_000;

    [Fact]
    public async Task Warm_interrupted_halfway_and_rerun_caches_every_line_exactly_once()
    {
        var server = await StartServerAsync();
        string work = Path.Combine(Artifacts.Path, "work");
        Directory.CreateDirectory(work);
        string corpus = Path.Combine(work, "corpus.jsonl");
        await File.WriteAllLinesAsync(corpus, Enumerable.Range(0, Lines).Select(i =>
            JsonSerializer.Serialize(new { id = $"doc-{i}", text = $"passage {i}: dense retrieval caches vectors for reranking" })));

        // First run: interrupted with SIGINT once a good part is done.
        using var first = StartWarm(work, corpus, server.Address);
        long doneBeforeInterrupt = 0;
        while (doneBeforeInterrupt < Lines / 4)
        {
            string? line = await first.StandardOutput.ReadLineAsync() ?? throw new InvalidOperationException("warm ended before it was interrupted");
            Output.WriteLine(line);
            var progress = ProgressLine().Match(line);
            if (progress.Success) doneBeforeInterrupt = long.Parse(progress.Groups[1].Value.Replace(",", ""));
        }
        Posix.Interrupt(first.Id);
        string rest = await first.StandardOutput.ReadToEndAsync();
        await first.WaitForExitAsync();
        Output.WriteLine(rest);
        Assert.Equal(130, first.ExitCode);
        Assert.Contains("interrupted after", rest);
        ulong cachedAfterFirst = await DocumentRowsAsync(server);
        Assert.InRange(cachedAfterFirst, (ulong)doneBeforeInterrupt, (ulong)Lines - 1);

        // Second run: computes only what is missing.
        using var second = StartWarm(work, corpus, server.Address);
        string secondOutput = await second.StandardOutput.ReadToEndAsync();
        await second.WaitForExitAsync();
        Output.WriteLine(secondOutput);
        Assert.Equal(0, second.ExitCode);
        var done = DoneLine().Match(secondOutput);
        Assert.True(done.Success, "the second run reports what it did");
        Assert.Equal(Lines - (long)cachedAfterFirst, long.Parse(done.Groups[1].Value.Replace(",", "")));
        Assert.Equal((long)cachedAfterFirst, long.Parse(done.Groups[2].Value.Replace(",", "")));

        // Every line cached exactly once, under its id.
        Assert.Equal((ulong)Lines, await DocumentRowsAsync(server));
        var files = JsonDocument.Parse(await Python.RunAsync("read_cache_files.py", Artifacts.Path)).RootElement;
        var ids = files.GetProperty($"{Wire.MiniLM}/document").EnumerateArray().Select(row => row[1].GetString()!).ToList();
        Assert.Equal(Lines, ids.Count);
        Assert.Equal(Lines, ids.Distinct().Count());
        // Through a server, the client wrote no root of its own: no ./artifacts/logs where it ran.
        Assert.False(Directory.Exists(Path.Combine(work, "artifacts")), "warm through --server created ./artifacts on the client side");
    }

    private static Process StartWarm(string workingDirectory, string corpus, string server)
    {
        // Through env --default-signal: a test run started in the background (nohup, `&` in a script) hands SIGINT down
        // ignored, and .NET leaves an ignored SIGINT ignored, so Ctrl+C would never reach warm.
        var start = new ProcessStartInfo("env")
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var arg in new[] { "--default-signal=INT", "dotnet", Embcache.Dll, "warm", Wire.MiniLM, corpus, "--server", server })
        {
            start.ArgumentList.Add(arg);
        }
        return Process.Start(start)!;
    }

    private static async Task<ulong> DocumentRowsAsync(ServerProcess server) =>
        (await server.Client.ListModelsAsync(new ListModelsRequest())).Models.Single(m => m.Name == Wire.MiniLM).DocumentRows;

    [GeneratedRegex(@"% ([\d,]+)/[\d,]+ rows")]
    private static partial Regex ProgressLine();

    [GeneratedRegex(@"done: [\d,]+ rows in [\d.]+ s: ([\d,]+) computed, ([\d,]+) already cached")]
    private static partial Regex DoneLine();
}
