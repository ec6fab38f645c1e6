using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// The README's CLI lines run as written, through the command they tell a new user to make: its
/// <c>readme-test: install</c> block in the checkout, then its <c>readme-test: cli</c> block in a fresh directory
/// holding a BEIR corpus, queries and a GPU job's .npy, against a real server that owns ./artifacts there.
/// </summary>
public sealed class ReadmeCliTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task The_readme_cli_lines_run_as_written()
    {
        string readme = await File.ReadAllTextAsync(Path.Combine(SourceTree.Root, "README.md"));
        string install = Block(readme, "install");
        string cli = Block(readme, "cli");
        Assert.Contains("embcache warm", cli);

        string work = Path.Combine(Artifacts.Path, "work");
        Directory.CreateDirectory(work);
        var server = await StartServerOnAsync(Path.Combine(work, "artifacts"));
        var documents = Wire.Texts(seed: 41, count: 30);
        await File.WriteAllLinesAsync(Path.Combine(work, "corpus.jsonl"),
            documents.Select((text, i) => JsonSerializer.Serialize(new { _id = $"doc{i}", title = $"Title {i}", text })));
        await File.WriteAllLinesAsync(Path.Combine(work, "queries.jsonl"),
            Wire.Texts(seed: 42, count: 5, prefix: "what is").Select((text, i) => JsonSerializer.Serialize(new { _id = $"q{i}", text })));
        await Python.RunAsync("make_npy.py", Path.Combine(work, "gpu_vectors.npy"), Path.Combine(work, "gpu_ids.json"), "50", "128", "43");

        // One shell, as a user's: the install block in the checkout, the CLI block where the data is.
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add($"set -euxo pipefail\ncd \"$REPO\"\n{install}\ncd \"$WORK\"\n{cli}");
        start.Environment["REPO"] = SourceTree.Root;
        start.Environment["WORK"] = work;
        start.Environment["EMBCACHE_SERVER"] = server.Address;
        using var shell = Process.Start(start)!;
        var stdout = shell.StandardOutput.ReadToEndAsync();
        var stderr = shell.StandardError.ReadToEndAsync();
        await shell.WaitForExitAsync();
        string log = await stdout + await stderr;
        Output.WriteLine(log);
        Assert.True(shell.ExitCode == 0, $"the README's lines failed (exit {shell.ExitCode}):\n{log}");

        Assert.Contains("30 rows as documents, stored under their ids", log);
        Assert.Contains("5 rows as queries, stored under their ids", log);
        Assert.Contains("imported 50 rows", log);
        Assert.Contains("gpu-encoder", log);
        Assert.Contains("all-MiniLM-L6-v2: model.onnx, mean pooling, normalized, cosine, 256 tokens", log);
        Assert.Contains("verify: ok", log);
        var exportedIds = JsonSerializer.Deserialize<string[]>(await File.ReadAllTextAsync(Path.Combine(work, "corpus_vectors.ids.json")))!;
        Assert.Equal(Enumerable.Range(0, 30).Select(i => $"doc{i}").Order(), exportedIds.Order());
        var rows = JsonSerializer.Deserialize<string[]>(await Python.RunAsync("load_npy.py", Path.Combine(work, "corpus_vectors.npy")))!;
        var got = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { exportedIds } });
        for (int i = 0; i < exportedIds.Length; i++) Assert.Equal(Convert.ToHexStringLower(Wire.Row(got.Vectors, i)), rows[i]);
        // The warms went through the server: no client log in ./artifacts/logs, which is the server's root here.
        string logs = Path.Combine(work, "artifacts", "logs");
        Assert.Empty(Directory.Exists(logs) ? Directory.GetFiles(logs, "warm-*") : []);
        Assert.Empty(server.ErrorLines());
    }

    /// <summary>The bash block that follows <c>&lt;!-- readme-test: NAME</c> in the README.</summary>
    private static string Block(string readme, string name)
    {
        var match = new Regex(@"<!-- readme-test: " + name + @"\b[^>]*-->\s*```bash\n(.*?)```", RegexOptions.Singleline).Match(readme);
        Assert.True(match.Success, $"README.md has no ```bash block marked <!-- readme-test: {name} -->");
        return match.Groups[1].Value;
    }
}
