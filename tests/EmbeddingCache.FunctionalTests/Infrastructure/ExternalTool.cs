using System.Diagnostics;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>Runs a program the tests drive (python3, node, npm), failing with its whole output.</summary>
public static class ExternalTool
{
    /// <summary>Runs <paramref name="program"/> to its end within <paramref name="timeout"/>; returns stderr and stdout, or throws with them.</summary>
    public static async Task<string> RunAsync(
        string program, string workingDirectory, IReadOnlyDictionary<string, string> environment, TimeSpan timeout, params string[] args)
    {
        var start = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        foreach (var (key, value) in environment) start.Environment[key] = value;
        string command = $"{program} {string.Join(' ', args)}";
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot run {program} ({e.Message}): tests/run.sh installs what the tests need", e);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var deadline = new CancellationTokenSource(timeout);
            try
            {
                await process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
                throw new TimeoutException($"{command} did not finish in {timeout}:\n{await stderr}\n{await stdout}");
            }
            string log = $"{await stderr}\n{await stdout}";
            if (process.ExitCode != 0) throw new InvalidOperationException($"{command} failed with exit code {process.ExitCode}:\n{log}");
            return log;
        }
    }
}
