using System.Diagnostics;
using System.Text.Json.Nodes;

namespace EmbeddingCache.Storage.Tests;

/// <summary>Runs numpy_reader.py with Debian's python3, the way a researcher opens the cache files.</summary>
internal static class NumpyReader
{
    public const string Python = "/usr/bin/python3";
    public const int MissingModules = 3;

    public static string ScriptPath => Path.Combine(AppContext.BaseDirectory, "numpy_reader.py");

    public static ProcessStartInfo StartInfo(params string[] arguments)
    {
        Assert.True(File.Exists(Python), $"{Python} is missing: install Debian's python3, python3-numpy and python3-msgpack (apt-get install python3-numpy python3-msgpack).");
        var start = new ProcessStartInfo(Python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(ScriptPath);
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return start;
    }

    /// <summary>Loads every segment of a kind folder with numpy; returns the dump, failing the test on any error.</summary>
    public static async Task<JsonObject> DumpAsync(string kindDirectory)
    {
        using var process = Process.Start(StartInfo("dump", kindDirectory))!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        FailIfMissing(process.ExitCode, await stderr);
        Assert.True(process.ExitCode == 0, $"numpy could not load the segments of {kindDirectory}: {await stderr}");
        return (JsonObject)JsonNode.Parse(await stdout)!;
    }

    public static void FailIfMissing(int exitCode, string stderr) =>
        Assert.False(exitCode == MissingModules, $"{Python} lacks numpy or msgpack ({stderr.Trim()}): install Debian's python3-numpy and python3-msgpack.");

    /// <summary>Rows of a dump, in segment then row order.</summary>
    public static List<(string? Key, string? Id, float[] Vector)> RowsOf(JsonObject dump) =>
        [.. dump["segments"]!.AsArray().SelectMany(s => s!["rows"]!.AsArray())
            .Select(r => ((string?)r!["key"], (string?)r["id"], r["vector"]!.AsArray().Select(v => (float)(double)v!).ToArray()))];
}
