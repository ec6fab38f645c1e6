using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using EmbeddingCache.Testing;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>
/// Debian's nginx running the repository's routing file (src/EmbeddingCache.Server/deploy/nginx-embcache.conf) on a
/// free 127.0.0.1 port, its placeholders filled in, in a temporary prefix of its own; stopped at dispose.
/// </summary>
public sealed partial class NginxProcess : IAsyncDisposable
{
    private const string Executable = "/usr/sbin/nginx";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);
    private readonly TempDirectory prefix = new();
    private readonly ConcurrentQueue<string> output = new();
    private Process? process;

    private NginxProcess()
    {
    }

    /// <summary>The file the README shows and operators install, relative to the checkout.</summary>
    public static string ConfigurationFile { get; } = Path.Combine(SourceTree.Root, "src", "EmbeddingCache.Server", "deploy", "nginx-embcache.conf");

    /// <summary>Where clients connect, e.g. "http://127.0.0.1:41234".</summary>
    public string Address { get; private set; } = "";

    /// <summary>host:port of <see cref="Address"/>, as the Python client takes it.</summary>
    public string HostAndPort => Address["http://".Length..];

    /// <summary>nginx's error log and what it printed, for a failure's message.</summary>
    public string ErrorLog => $"{ReadShared(Path.Combine(prefix.Path, "logs", "error.log"))}\n{string.Join('\n', output)}";

    /// <summary>
    /// Starts nginx on the repository's file with <paramref name="upstreams"/> filling its placeholders (e.g.
    /// <c>["DEFAULT_WRITER"] = "127.0.0.1:5000"</c>); every placeholder but the listen address must be given.
    /// </summary>
    public static async Task<NginxProcess> StartAsync(IReadOnlyDictionary<string, string> upstreams)
    {
        if (!File.Exists(Executable)) throw new InvalidOperationException($"{Executable} is missing: tests/run.sh installs Debian's nginx");
        var nginx = new NginxProcess();
        Directory.CreateDirectory(Path.Combine(nginx.prefix.Path, "logs"));
        Directory.CreateDirectory(Path.Combine(nginx.prefix.Path, "temp"));
        // A port found free may be taken before nginx binds it: try a few.
        for (int attempt = 1; ; attempt++)
        {
            int port = LoopbackPort.Free();
            nginx.WriteConfiguration(port, upstreams);
            if (await nginx.TryStartAsync(port)) return nginx;
            if (attempt == 3 || !nginx.ErrorLog.Contains("Address already in use", StringComparison.Ordinal))
            {
                string log = nginx.ErrorLog;
                await nginx.DisposeAsync();
                throw new InvalidOperationException($"nginx did not start:\n{log}");
            }
        }
    }

    /// <summary>The access log's lines (the file's <c>embcache</c> format: model header, upstream, statuses), parsed.</summary>
    public IReadOnlyList<AccessLine> AccessLines() =>
        [.. ReadShared(Path.Combine(prefix.Path, "logs", "embcache-access.log"))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => AccessLineFormat().Match(line) is { Success: true } m
                ? new AccessLine(m.Groups["method"].Value, m.Groups["model"].Value, m.Groups["upstream"].Value, m.Groups["http"].Value, m.Groups["grpc"].Value)
                : throw new InvalidDataException($"nginx access log line not in the embcache format: {line}"))];

    private void WriteConfiguration(int port, IReadOnlyDictionary<string, string> upstreams)
    {
        string routing = File.ReadAllText(ConfigurationFile)
            .Replace("@LISTEN@", $"127.0.0.1:{port}", StringComparison.Ordinal)
            .Replace("/var/log/nginx/", "logs/", StringComparison.Ordinal);
        foreach (var (name, address) in upstreams) routing = routing.Replace($"@{name}@", address, StringComparison.Ordinal);
        if (Placeholder().Match(routing) is { Success: true } left) throw new ArgumentException($"no address given for {left.Value} of {ConfigurationFile}");
        File.WriteAllText(Path.Combine(prefix.Path, "embcache.conf"), routing);
        // What Debian's /etc/nginx/nginx.conf would give around it, with every path inside the prefix.
        File.WriteAllText(Path.Combine(prefix.Path, "nginx.conf"), """
            pid nginx.pid;
            error_log logs/error.log info;
            worker_processes 1;
            events { worker_connections 1024; }
            http {
                client_body_temp_path temp/body;
                proxy_temp_path temp/proxy;
                fastcgi_temp_path temp/fastcgi;
                uwsgi_temp_path temp/uwsgi;
                scgi_temp_path temp/scgi;
                include embcache.conf;
            }
            """);
    }

    private async Task<bool> TryStartAsync(int port)
    {
        var start = new ProcessStartInfo(Executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "-p", prefix.Path + "/", "-c", "nginx.conf", "-g", "daemon off;" }) start.ArgumentList.Add(arg);
        process?.Dispose(); // an attempt that found its port taken, and exited
        process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await Wait.UntilAsync(() => Accepts(port), $"nginx to accept on 127.0.0.1:{port}", StartTimeout);
        }
        catch (TimeoutException) when (process.HasExited)
        {
            return false;
        }
        Address = $"http://127.0.0.1:{port}";
        return true;

        bool Accepts(int port)
        {
            if (process.HasExited) throw new TimeoutException("nginx exited");
            try
            {
                using var client = new TcpClient();
                client.Connect("127.0.0.1", port);
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }
    }

    /// <summary>A log nginx still has open.</summary>
    private static string ReadShared(string path)
    {
        if (!File.Exists(path)) return "";
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd();
    }

    public async ValueTask DisposeAsync()
    {
        if (process is { HasExited: false })
        {
            // SIGTERM: the master stops its workers and exits.
            Posix.Terminate(process.Id);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
        }
        process?.Dispose();
        prefix.Dispose();
    }

    [GeneratedRegex("@[A-Z0-9_]+@")]
    private static partial Regex Placeholder();

    [GeneratedRegex(@"^\S+ /[^/]+/(?<method>\S+) model=(?<model>\S+) upstream=(?<upstream>\S+(?:, \S+)*) http=(?<http>\S+) grpc=(?<grpc>\S+)$")]
    private static partial Regex AccessLineFormat();
}

/// <summary>One call nginx passed on: the method, the embcache-model header ("-" when absent), the upstream(s) tried.</summary>
public sealed record AccessLine(string Method, string Model, string Upstream, string HttpStatus, string GrpcStatus);
