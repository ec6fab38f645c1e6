using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using EmbeddingCache.Testing;
using Grpc.Health.V1;
using Grpc.Net.Client;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>
/// The real embcache executable in its own process on 127.0.0.1 with a free port, so that tests talk to it
/// over real HTTP/2 and can kill it with SIGKILL. Its log is kept and shown when a test fails.
/// </summary>
public sealed partial class ServerProcess : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);
    private readonly Process process;
    private readonly ConcurrentQueue<string> log = new();
    private readonly TaskCompletionSource<string> listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // The server reports SERVING just before it logs ServerReady, and its output arrives on its own: a test reading the
    // start-up log must not race that line.
    private readonly TaskCompletionSource readyLogged = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private GrpcChannel? channel;

    private readonly X509Certificate2? trustedCertificate;

    private ServerProcess(string artifactsDirectory, X509Certificate2? trustedCertificate, IEnumerable<string> extraArgs)
    {
        this.trustedCertificate = trustedCertificate;
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
        process = new Process { StartInfo = start, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.Exited += (_, _) =>
        {
            process.WaitForExit(); // the last lines of output, which say why it exited
            listening.TrySetException(new InvalidOperationException($"embcache exited with code {process.ExitCode} before listening:\n{Log}"));
        };
    }

    public string ArtifactsDirectory { get; }

    public string Address { get; private set; } = "";

    public int ProcessId { get; private set; }

    public bool HasExited => process.HasExited;

    /// <summary>Everything the server printed so far.</summary>
    public string Log => string.Join('\n', log);

    public EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient Client { get; private set; } = null!;

    public GrpcChannel Channel => channel!;

    /// <summary>Starts the server and returns once health says SERVING (models loaded and warmed).</summary>
    public static Task<ServerProcess> StartAsync(string artifactsDirectory, params string[] extraArgs) =>
        StartAsync(artifactsDirectory, trustedCertificate: null, extraArgs);

    /// <summary>
    /// Starts the server; with <paramref name="trustedCertificate"/>, the client channel speaks TLS and trusts that
    /// certificate alone as its root (the server must then be given an https URL and the certificate).
    /// </summary>
    public static async Task<ServerProcess> StartAsync(string artifactsDirectory, X509Certificate2? trustedCertificate, params string[] extraArgs)
    {
        var server = new ServerProcess(artifactsDirectory, trustedCertificate, extraArgs);
        server.process.Start();
        server.ProcessId = server.process.Id;
        server.process.BeginOutputReadLine();
        server.process.BeginErrorReadLine();
        try
        {
            server.Address = await server.listening.Task.WaitAsync(StartTimeout);
            server.channel = GrpcChannel.ForAddress(server.Address, new GrpcChannelOptions
            {
                MaxReceiveMessageSize = null,
                MaxSendMessageSize = null,
                HttpHandler = server.trustedCertificate is { } certificate ? TrustingOnly(certificate) : null,
            });
            server.Client = new EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient(server.channel);
            await server.WaitUntilServingAsync();
            await server.readyLogged.Task.WaitAsync(StartTimeout);
            return server;
        }
        catch (Exception e)
        {
            await server.DisposeAsync();
            if (e is InvalidOperationException) throw;
            throw new InvalidOperationException($"embcache did not become SERVING ({e.Message}):\n{server.Log}", e);
        }
    }

    /// <summary>An HTTP handler that accepts a server certificate only if it chains to <paramref name="root"/>.</summary>
    public static SocketsHttpHandler TrustingOnly(X509Certificate2 root) => new()
    {
        SslOptions = new SslClientAuthenticationOptions
        {
            RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            {
                if (certificate is null) return false;
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(root);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(new X509Certificate2(certificate));
            },
        },
    };

    private Task WaitUntilServingAsync()
    {
        // The server answers NOT_SERVING until its models are warm.
        var health = new Health.HealthClient(channel);
        return Wait.UntilAsync(
            async () =>
            {
                if (process.HasExited) throw new InvalidOperationException($"embcache exited while loading models:\n{Log}");
                var reply = await health.CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow + StartTimeout);
                return reply.Status == HealthCheckResponse.Types.ServingStatus.Serving;
            },
            "health to say SERVING",
            StartTimeout);
    }

    private void OnLine(string? line)
    {
        if (line is null) return;
        log.Enqueue(line);
        var match = ListeningLine().Match(line);
        if (match.Success) listening.TrySetResult(match.Groups[1].Value);
        if (line.Contains("EmbeddingCache ready", StringComparison.Ordinal)) readyLogged.TrySetResult();
    }

    /// <summary>SIGKILL: no shutdown code runs, as in a crash or power loss.</summary>
    public async Task KillAsync()
    {
        if (!process.HasExited) process.Kill();
        await process.WaitForExitAsync();
    }

    /// <summary>SIGTERM-like graceful stop through the host: requests drain, storage flushes.</summary>
    public async Task StopAsync()
    {
        if (!process.HasExited)
        {
            Posix.Terminate(process.Id);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await process.WaitForExitAsync(timeout.Token);
        }
    }

    /// <summary>Log lines at error level or worse that the test did not expect.</summary>
    public IReadOnlyList<string> ErrorLines() =>
        log.Where(l => l.Contains(" fail: ", StringComparison.Ordinal) || l.Contains(" crit: ", StringComparison.Ordinal)).ToList();

    public async ValueTask DisposeAsync()
    {
        channel?.Dispose();
        await KillAsync();
        process.Dispose();
    }

    [GeneratedRegex(@"Now listening on: (https?://127\.0\.0\.1:\d+)")]
    private static partial Regex ListeningLine();
}
