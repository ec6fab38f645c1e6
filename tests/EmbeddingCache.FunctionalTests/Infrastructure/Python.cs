using System.Diagnostics;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>
/// Runs a script of tests/python with Debian's python3, whose numpy and msgpack are what our users open the
/// files with. A missing interpreter or package fails the test with a message saying what to install.
/// </summary>
public static class Python
{
    private const string Interpreter = "/usr/bin/python3";

    public static async Task<string> RunAsync(string script, params string[] args)
    {
        if (!File.Exists(Interpreter))
        {
            throw new InvalidOperationException($"{Interpreter} is missing: apt-get install python3 python3-numpy python3-msgpack");
        }
        var start = new ProcessStartInfo(Interpreter)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "python", script));
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"python3 {script} failed with exit code {process.ExitCode}:\n{await stderr}\n{await stdout}");
        }
        return await stdout;
    }
}
