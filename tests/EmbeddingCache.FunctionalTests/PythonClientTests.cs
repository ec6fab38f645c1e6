using System.Diagnostics;
using EmbeddingCache.FunctionalTests.Infrastructure;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// The Python client (src/python/embedding_cache) as researchers use it: tests/python/test_client.py runs with
/// Debian's python3 against a real server, importing the package from the source tree.
/// </summary>
public sealed class PythonClientTests(ITestOutputHelper output) : ServerTest(output)
{
    private const string Interpreter = "/usr/bin/python3";
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(10);

    [Fact]
    public async Task Python_client_passes_its_unittest_suite_against_a_real_server()
    {
        // Small segments, so that open_cache reads caches spread over several sealed segments.
        var server = await StartServerAsync("--EmbeddingCache:Storage:SegmentRows=64");
        string repo = RepositoryRoot();
        var environment = new Dictionary<string, string>
        {
            ["EMBCACHE_ADDRESS"] = server.Address,
            ["EMBCACHE_ARTIFACTS"] = server.ArtifactsDirectory,
            ["EMBCACHE_REPO"] = repo,
            ["PYTHONPATH"] = Path.Combine(repo, "src", "python"),
            ["PYTHONDONTWRITEBYTECODE"] = "1",
        };

        string log = await RunPythonAsync(Path.Combine(AppContext.BaseDirectory, "python"), environment, "-m", "unittest", "-v", "test_client", "test_rerank");

        Output.WriteLine(log);
        Assert.Matches(@"Ran [1-9]\d* tests? in", log);
        // A skipped test would hide a missing piece (protoc for the descriptor check, the artifacts path).
        Assert.DoesNotContain("skipped", log, StringComparison.Ordinal);
        Assert.Empty(server.ErrorLines());
    }

    /// <summary>The folder holding EmbeddingCache.sln, above the test's output directory.</summary>
    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "EmbeddingCache.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException($"EmbeddingCache.sln not found above {AppContext.BaseDirectory}: the Python package is read from the source tree");
    }

    /// <summary>Like <see cref="Python.RunAsync"/>, with a working directory and environment; fails with the full output.</summary>
    private static async Task<string> RunPythonAsync(string workingDirectory, Dictionary<string, string> environment, params string[] args)
    {
        if (!File.Exists(Interpreter))
        {
            throw new InvalidOperationException($"{Interpreter} is missing: apt-get install python3 python3-numpy python3-msgpack python3-grpcio python3-protobuf");
        }
        var start = new ProcessStartInfo(Interpreter)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        foreach (var (key, value) in environment) start.Environment[key] = value;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(RunTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            throw new TimeoutException($"python3 {string.Join(' ', args)} did not finish in {RunTimeout}:\n{await stderr}\n{await stdout}");
        }
        // unittest reports on stderr; prints of the tests go to stdout.
        string log = $"{await stderr}\n{await stdout}";
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"python3 {string.Join(' ', args)} failed with exit code {process.ExitCode}:\n{log}");
        }
        return log;
    }
}
