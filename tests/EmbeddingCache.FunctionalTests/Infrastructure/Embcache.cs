using System.Diagnostics;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>Runs an embcache verb as a separate process, the way a researcher's shell does.</summary>
public static class Embcache
{
    /// <summary>The built embcache.dll, copied beside the tests.</summary>
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "embcache.dll");

    /// <summary>Runs <c>embcache ARGS</c> to its end; returns its exit code and its standard output followed by its standard error.</summary>
    public static Task<(int ExitCode, string Output)> RunAsync(params string[] args) => RunInAsync(Environment.CurrentDirectory, args);

    /// <summary><see cref="RunAsync"/> in <paramref name="workingDirectory"/>, where relative paths and ./artifacts are.</summary>
    public static async Task<(int ExitCode, string Output)> RunInAsync(string workingDirectory, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        start.ArgumentList.Add(Dll);
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout + await stderr);
    }
}
