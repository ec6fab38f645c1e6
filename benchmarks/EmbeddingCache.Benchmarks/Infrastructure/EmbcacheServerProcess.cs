using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;
using Grpc.Health.V1;
using Grpc.Net.Client;

namespace EmbeddingCache.Benchmarks.Infrastructure;

/// <summary>
/// The real <c>embcache</c> server, started from this program's output folder (the server project's build is
/// copied here) on 127.0.0.1 with a free port and its own artifacts directory. Every instance is killed when it is
/// disposed, and, as a last resort, when this process exits (Ctrl+C, SIGTERM, an unhandled exception).
/// </summary>
public sealed partial class EmbcacheServerProcess : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(180);
    private static readonly ConcurrentDictionary<int, Process> Running = new();
    private const int LogLinesKept = 200;

    private readonly Process _process;
    private readonly ConcurrentQueue<string> _log = new();
    private readonly TaskCompletionSource<string> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _processId = -1;

    static EmbcacheServerProcess()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();
    }

    private EmbcacheServerProcess(string artifactsDirectory, IEnumerable<string> extraArgs)
    {
        ArtifactsDirectory = artifactsDirectory;
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "embcache.dll"));
        foreach (var arg in new[] { "--urls", "http://127.0.0.1:0", "--artifacts", artifactsDirectory }.Concat(extraArgs))
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        _process = new Process { StartInfo = start, EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.Exited += (_, _) => _listening.TrySetException(
            new InvalidOperationException($"embcache exited with code {_process.ExitCode} before listening:\n{Log}"));
    }

    /// <summary>The artifacts root the server was started on.</summary>
    public string ArtifactsDirectory { get; }

    /// <summary>The server's <c>http://127.0.0.1:PORT</c> address.</summary>
    public string Address { get; private set; } = "";

    /// <summary>The last lines the server printed.</summary>
    public string Log => string.Join('\n', _log);

    /// <summary>CPU time the server process has used so far.</summary>
    public TimeSpan CpuTime
    {
        get
        {
            try
            {
                _process.Refresh();
                return _process.HasExited ? TimeSpan.Zero : _process.TotalProcessorTime;
            }
            catch (InvalidOperationException)
            {
                return TimeSpan.Zero;
            }
        }
    }

    /// <summary>
    /// Starts the server, with <paramref name="extraArgs"/> after its own (settings such as
    /// <c>--EmbeddingCache:Encoder:IntraOpSpinning=true</c>), and returns once its health service says SERVING.
    /// </summary>
    public static async Task<EmbcacheServerProcess> StartAsync(string artifactsDirectory, CancellationToken cancellationToken, params string[] extraArgs)
    {
        var embcache = Path.Combine(AppContext.BaseDirectory, "embcache.dll");
        if (!File.Exists(embcache))
        {
            throw new FileNotFoundException($"{embcache} is missing: build the benchmark project, which copies the server's build next to it.", embcache);
        }

        var server = new EmbcacheServerProcess(artifactsDirectory, extraArgs);
        try
        {
            server._process.Start();
            server._processId = server._process.Id;
            Running[server._processId] = server._process;
            server._process.BeginOutputReadLine();
            server._process.BeginErrorReadLine();
            server.Address = await server._listening.Task.WaitAsync(StartTimeout, cancellationToken).ConfigureAwait(false);
            await server.WaitUntilServingAsync(cancellationToken).ConfigureAwait(false);
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>A channel to the server with no message size limits (batches of 64 rows are large).</summary>
    public GrpcChannel OpenChannel() => GrpcChannel.ForAddress(Address, new GrpcChannelOptions
    {
        MaxReceiveMessageSize = null,
        MaxSendMessageSize = null,
    });

    /// <summary>Kills the server (and anything it started) and waits for it to be gone.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            await _process.WaitForExitAsync().ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
            // Never started.
        }
        finally
        {
            Running.TryRemove(_processId, out _);
            _process.Dispose();
        }
    }

    private static void KillAll()
    {
        foreach (var process in Running.Values)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                }
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
        }
    }

    private async Task WaitUntilServingAsync(CancellationToken cancellationToken)
    {
        using var channel = OpenChannel();
        var health = new Health.HealthClient(channel);
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"embcache exited while loading models:\n{Log}");
            }

            if (deadline.Elapsed > StartTimeout)
            {
                throw new TimeoutException($"embcache not SERVING after {StartTimeout}:\n{Log}");
            }

            var reply = await health.CheckAsync(new HealthCheckRequest(), cancellationToken: cancellationToken).ConfigureAwait(false);
            if (reply.Status == HealthCheckResponse.Types.ServingStatus.Serving)
            {
                return;
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        _log.Enqueue(line);
        while (_log.Count > LogLinesKept && _log.TryDequeue(out _))
        {
        }

        var match = ListeningLine().Match(line);
        if (match.Success)
        {
            _listening.TrySetResult(match.Groups[1].Value);
        }
    }

    [GeneratedRegex(@"Now listening on: (http://127\.0\.0\.1:\d+)")]
    private static partial Regex ListeningLine();
}
