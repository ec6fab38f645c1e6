using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace EmbeddingCache.Benchmarks.HitPath;

/// <summary>
/// The peer: Debian's redis-server, started on 127.0.0.1 with a free port and persistence off
/// (<c>--save "" --appendonly no</c>), loaded with the dataset's vectors under their ids as string keys through
/// <c>redis-cli --pipe</c> (Redis's documented mass insertion). Killed when disposed and when this process exits.
/// </summary>
public sealed class RedisPeer : IAsyncDisposable
{
    /// <summary>The Debian packages the peer and its Python client need.</summary>
    public const string DebianPackages = "redis-server python3-redis python3-hiredis";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    private readonly Process _process;
    private readonly string _directory;

    private RedisPeer(Process process, int port, string directory)
    {
        _process = process;
        Port = port;
        _directory = directory;
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Kill();
    }

    /// <summary>The port on 127.0.0.1.</summary>
    public int Port { get; }

    /// <summary>The server's process id, for CPU accounting.</summary>
    public int ProcessId => _process.Id;

    /// <summary>
    /// Installs redis-server and redis-py (with hiredis, its fast reply parser) from Debian when one is missing and
    /// this runs as root; otherwise throws with the command to run.
    /// </summary>
    public static async Task EnsureInstalledAsync(CancellationToken cancellationToken)
    {
        if (FindOnPath("redis-server") is not null && FindOnPath("redis-cli") is not null
            && await RunAsync("/usr/bin/python3", "-c \"import redis, hiredis\"", cancellationToken).ConfigureAwait(false) == 0)
        {
            return;
        }

        if (Environment.UserName != "root")
        {
            throw new InvalidOperationException($"Redis or redis-py is missing: run `sudo apt-get install -y {DebianPackages}` (or pass --skip-redis).");
        }

        Console.WriteLine($"  installing {DebianPackages} with apt-get");
        if (await RunAsync("apt-get", $"install -y -q {DebianPackages}", cancellationToken).ConfigureAwait(false) != 0
            && (await RunAsync("apt-get", "update -q", cancellationToken).ConfigureAwait(false) != 0
                || await RunAsync("apt-get", $"install -y -q {DebianPackages}", cancellationToken).ConfigureAwait(false) != 0))
        {
            throw new InvalidOperationException($"apt-get could not install {DebianPackages}; install them by hand or pass --skip-redis.");
        }
    }

    /// <summary>Starts redis-server in <paramref name="directory"/> and waits until it answers PING.</summary>
    public static async Task<RedisPeer> StartAsync(string directory, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(directory);
        var port = FreePort();
        var start = new ProcessStartInfo("redis-server")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = directory,
        };
        foreach (var arg in new[]
                 {
                     "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", directory, "--loglevel", "warning", "--daemonize", "no",
                 })
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var peer = new RedisPeer(process, port, directory);
        var deadline = Stopwatch.StartNew();
        while (await peer.CliAsync("PING", cancellationToken).ConfigureAwait(false) != "PONG")
        {
            if (process.HasExited || deadline.Elapsed > StartTimeout)
            {
                await peer.DisposeAsync().ConfigureAwait(false);
                throw new InvalidOperationException($"redis-server did not answer PING on 127.0.0.1:{port}");
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }

        return peer;
    }

    /// <summary>SETs every row of the .npy under its id, pipelined; returns the keys Redis then holds.</summary>
    public async Task<long> LoadAsync(string npy, long firstRow, int rows, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("redis-cli")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "-h", "127.0.0.1", "-p", Port.ToString(CultureInfo.InvariantCulture), "--pipe" })
        {
            start.ArgumentList.Add(arg);
        }

        using var cli = Process.Start(start) ?? throw new InvalidOperationException("redis-cli did not start");
        var output = cli.StandardOutput.ReadToEndAsync(cancellationToken);
        var errors = cli.StandardError.ReadToEndAsync(cancellationToken);
        const int rowBytes = HitDataset.Dims * sizeof(float);
        using (var input = cli.StandardInput.BaseStream)
        await using (var vectors = File.OpenRead(npy))
        {
            vectors.Seek(vectors.Length - (long)rows * rowBytes, SeekOrigin.Begin);
            var row = new byte[rowBytes];
            var buffer = new BufferedStream(input, 1 << 20);
            var valueHeader = Encoding.ASCII.GetBytes($"${rowBytes}\r\n");
            for (var i = 0; i < rows; i++)
            {
                vectors.ReadExactly(row);
                var key = HitDataset.IdOf(firstRow + i);
                buffer.Write(Encoding.ASCII.GetBytes($"*3\r\n$3\r\nSET\r\n${key.Length}\r\n{key}\r\n"));
                buffer.Write(valueHeader);
                buffer.Write(row);
                buffer.Write("\r\n"u8);
            }

            await buffer.FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        await cli.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        if (cli.ExitCode != 0 || !(await output.ConfigureAwait(false)).Contains("errors: 0", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"redis-cli --pipe failed: {await output.ConfigureAwait(false)} {await errors.ConfigureAwait(false)}");
        }

        return long.Parse(await CliAsync("DBSIZE", cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture);
    }

    /// <summary>Redis's own count of the memory it uses (<c>INFO memory</c>, used_memory), in bytes.</summary>
    public async Task<long> UsedMemoryAsync(CancellationToken cancellationToken)
    {
        var info = await CliAsync("INFO memory", cancellationToken).ConfigureAwait(false);
        var line = info.Split('\n').First(line => line.StartsWith("used_memory:", StringComparison.Ordinal));
        return long.Parse(line["used_memory:".Length..].Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>Kills the server and removes its directory.</summary>
    public async ValueTask DisposeAsync()
    {
        Kill();
        await _process.WaitForExitAsync().ConfigureAwait(false);
        _process.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // Left for the next run to reuse.
        }
    }

    private void Kill()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }

    private async Task<string> CliAsync(string command, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("redis-cli") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { "-h", "127.0.0.1", "-p", Port.ToString(CultureInfo.InvariantCulture) }.Concat(command.Split(' ')))
        {
            start.ArgumentList.Add(arg);
        }

        using var cli = Process.Start(start) ?? throw new InvalidOperationException("redis-cli did not start");
        var output = await cli.StandardOutput.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
        await cli.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        return output.Trim();
    }

    private static async Task<int> RunAsync(string program, string arguments, CancellationToken cancellationToken)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(program, arguments) { UseShellExecute = false })
                                ?? throw new InvalidOperationException($"{program} did not start");
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            return process.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return -1;
        }
    }

    private static string? FindOnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
        .Select(folder => Path.Combine(folder, program))
        .FirstOrDefault(File.Exists);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
