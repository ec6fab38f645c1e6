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
        // Small segments, so that open_cache reads caches spread over several sealed segments. test_readme runs the
        // README's install lines in a fresh virtual environment and its snippet against this server.
        await RunSuiteAsync(["--EmbeddingCache:Storage:SegmentRows=64"], [], "test_client", "test_rerank", "test_readme");
    }

    [Fact]
    public async Task Python_encoder_adapters_and_async_client_pass_their_suite_against_a_server_with_a_small_request_limit()
    {
        // A small limit, so that one encode() of more rows than a request may carry has to stream past it.
        const int MaxRows = 32;
        await RunSuiteAsync([$"--EmbeddingCache:MaxRowsPerRequest={MaxRows}"], new() { ["EMBCACHE_MAX_ROWS"] = $"{MaxRows}" }, "test_adapters");
    }

    private async Task RunSuiteAsync(string[] serverArgs, Dictionary<string, string> extraEnvironment, params string[] modules)
    {
        var server = await StartServerAsync(serverArgs);
        string repo = SourceTree.Root;
        var environment = new Dictionary<string, string>(extraEnvironment)
        {
            ["EMBCACHE_ADDRESS"] = server.Address,
            ["EMBCACHE_ARTIFACTS"] = server.ArtifactsDirectory,
            ["EMBCACHE_REPO"] = repo,
            ["PYTHONPATH"] = Path.Combine(repo, "src", "python"),
            ["PYTHONDONTWRITEBYTECODE"] = "1",
        };

        string log = await RunPythonAsync(Path.Combine(AppContext.BaseDirectory, "python"), environment, ["-m", "unittest", "-v", .. modules]);

        Output.WriteLine(log);
        Assert.Matches(@"Ran [1-9]\d* tests? in", log);
        // A skipped test would hide a missing piece (protoc for the descriptor check, the artifacts path).
        Assert.DoesNotContain("skipped", log, StringComparison.Ordinal);
        Assert.Empty(server.ErrorLines());
    }

    /// <summary>Like <see cref="Python.RunAsync"/>, with a working directory and environment; fails with the full output.</summary>
    private static async Task<string> RunPythonAsync(string workingDirectory, Dictionary<string, string> environment, params string[] args)
    {
        if (!File.Exists(Interpreter))
        {
            throw new InvalidOperationException($"{Interpreter} is missing: apt-get install python3 python3-numpy python3-msgpack python3-grpcio python3-protobuf python3-tqdm python3-venv");
        }
        // unittest reports on stderr; prints of the tests go to stdout.
        return await ExternalTool.RunAsync(Interpreter, workingDirectory, environment, RunTimeout, args);
    }
}
