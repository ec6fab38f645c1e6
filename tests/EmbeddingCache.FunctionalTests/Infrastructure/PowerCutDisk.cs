using System.Diagnostics;
using System.Text.Json;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>
/// A disk that can lose power: tests/python/powercut_fs.py mounted over a backing directory (FUSE, Debian's fuse3 and
/// python3-pyfuse3). What the server fsyncs survives a <see cref="CutAsync"/>; what it did not is lost, all of it or
/// a seeded random subset, as a disk may lose it. Each cut unmounts, writes the durable state as the next backing
/// directory and mounts it again at the same <see cref="Mountpoint"/>.
/// </summary>
public sealed class PowerCutDisk : IAsyncDisposable
{
    private static readonly TimeSpan MountTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan CutTimeout = TimeSpan.FromSeconds(300);
    private readonly string root;
    private int generation;
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> daemonLog = new();
    private Process? daemon;

    private PowerCutDisk(string root)
    {
        this.root = root;
        Mountpoint = Path.Combine(root, "mnt");
        Directory.CreateDirectory(Mountpoint);
        Directory.CreateDirectory(Backing(0));
    }

    /// <summary>Where the server's artifacts root lives.</summary>
    public string Mountpoint { get; }

    /// <summary>Pending pieces (4 KiB pieces of writes, truncates, name operations) lost and kept over all cuts.</summary>
    public long PiecesLost { get; private set; }

    public long PiecesKept { get; private set; }

    /// <summary>Mounts an empty disk under <paramref name="root"/>, which must exist.</summary>
    public static async Task<PowerCutDisk> MountAsync(string root)
    {
        if (!File.Exists("/dev/fuse"))
        {
            throw new InvalidOperationException("/dev/fuse is missing: the power-cut tests need FUSE (apt-get install fuse3 python3-pyfuse3, and a kernel with fuse)");
        }
        var disk = new PowerCutDisk(root);
        await disk.PowerOnAsync();
        return disk;
    }

    /// <summary>
    /// Cuts the power (the server must already be dead: a killed process is what a power cut leaves): every pending
    /// operation is lost, or with <paramref name="subsetSeed"/> a random subset of them survives. Then powers on.
    /// </summary>
    public async Task<JsonElement> CutAsync(int? subsetSeed)
    {
        var running = daemon ?? throw new InvalidOperationException("the disk is not mounted");
        await running.StandardInput.WriteLineAsync(subsetSeed is { } seed ? $"cut subset {seed}" : "cut all");
        await running.StandardInput.FlushAsync();
        using var timeout = new CancellationTokenSource(CutTimeout);
        string? line = await running.StandardOutput.ReadLineAsync(timeout.Token);
        await running.WaitForExitAsync(timeout.Token);
        if (line is null || running.ExitCode != 0)
        {
            throw new InvalidOperationException($"powercut_fs failed at the cut (exit {running.ExitCode}):\n{DaemonLog}");
        }
        running.Dispose();
        daemon = null;
        var counts = JsonDocument.Parse(line).RootElement.Clone();
        PiecesLost += counts.GetProperty("pieces_lost").GetInt64();
        PiecesKept += counts.GetProperty("pieces_kept").GetInt64();
        Directory.Delete(Backing(generation), recursive: true);
        generation++;
        await PowerOnAsync();
        return counts;
    }

    private string DaemonLog => string.Join('\n', daemonLog);

    private string Backing(int number) => Path.Combine(root, $"disk-{number}");

    private async Task PowerOnAsync()
    {
        var start = new ProcessStartInfo("/usr/bin/python3")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "python", "powercut_fs.py"));
        start.ArgumentList.Add(Backing(generation));
        start.ArgumentList.Add(Mountpoint);
        start.ArgumentList.Add(Backing(generation + 1));
        var process = Process.Start(start)!;
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) daemonLog.Enqueue(e.Data); };
        process.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(MountTimeout);
        string? ready;
        try
        {
            ready = await process.StandardOutput.ReadLineAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            ready = null;
        }
        if (ready != "ready")
        {
            process.Kill();
            throw new InvalidOperationException(
                $"powercut_fs did not mount {Mountpoint} (is python3-pyfuse3 installed, /dev/fuse usable?):\n{DaemonLog}");
        }
        daemon = process;
    }

    /// <summary>Unmounts (the daemon unmounts when its stdin closes) and removes the disks.</summary>
    public async ValueTask DisposeAsync()
    {
        if (daemon is { } running)
        {
            running.StandardInput.Close();
            using var timeout = new CancellationTokenSource(MountTimeout);
            try
            {
                await running.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                running.Kill();
                await running.WaitForExitAsync();
            }
            running.Dispose();
        }
    }
}
