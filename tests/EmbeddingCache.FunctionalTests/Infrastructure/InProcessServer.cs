using System.Collections.Concurrent;
using EmbeddingCache.Server.Hosting;
using EmbeddingCache.Testing;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>
/// The real server (ServerHost's application, Kestrel on 127.0.0.1 with a free port, default settings, its own
/// artifacts root) inside the test process, started once for every test of <see cref="SharedServerCollection"/>: tests
/// that need no process of their own skip a start-up each. They share its caches, so each uses its own model names or
/// texts; each sees only the log lines of its own time.
/// </summary>
public sealed class InProcessServer : IAsyncLifetime
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);
    private readonly TempDirectory artifacts = new();
    private readonly ConcurrentQueue<string> log = new();
    private WebApplication? app;
    private GrpcChannel? channel;
    private int testStartsAt;

    public string ArtifactsDirectory => artifacts.Path;

    public string Address { get; private set; } = "";

    public EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient Client { get; private set; } = null!;

    public GrpcChannel Channel => channel!;

    /// <summary>What the server logged since the current test began.</summary>
    public string Log => string.Join('\n', log.Skip(testStartsAt));

    public async Task InitializeAsync()
    {
        // Its console stays quiet (the lines go to the log kept here); Production as for the real executable.
        app = ServerHost.Build(["--urls", "http://127.0.0.1:0", "--artifacts", artifacts.Path, "--environment", "Production",
            "--Logging:Console:LogLevel:Default=None"]);
        app.Services.GetRequiredService<ILoggerFactory>().AddProvider(new LineLoggerProvider(log));
        await app.StartAsync();
        Address = app.Urls.Single();
        channel = GrpcChannel.ForAddress(Address, new GrpcChannelOptions { MaxReceiveMessageSize = null, MaxSendMessageSize = null });
        Client = new EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient(channel);
        var health = new Health.HealthClient(channel);
        await Wait.UntilAsync(
            async () => (await health.CheckAsync(new HealthCheckRequest())).Status == HealthCheckResponse.Types.ServingStatus.Serving,
            "the in-process server's health to say SERVING",
            StartTimeout);
        // Its ready line also shows that this log receives the server's lines, which ErrorLines relies on.
        await Wait.UntilAsync(() => log.Any(line => line.Contains("EmbeddingCache ready", StringComparison.Ordinal)), "the in-process server to log that it is ready");
    }

    /// <summary>Starts a test's view of the log: <see cref="Log"/> and <see cref="ErrorLines"/> hold only what follows.</summary>
    public void BeginTest() => testStartsAt = log.Count;

    /// <summary>Log lines at error level or worse since the current test began.</summary>
    public IReadOnlyList<string> ErrorLines() =>
        log.Skip(testStartsAt).Where(l => l.Contains(" fail: ", StringComparison.Ordinal) || l.Contains(" crit: ", StringComparison.Ordinal)).ToList();

    public async Task DisposeAsync()
    {
        channel?.Dispose();
        if (app is not null)
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }

        artifacts.Dispose();
    }

    /// <summary>Keeps every log line in the console's level words (" fail: ", " crit: "), which <see cref="ErrorLines"/> looks for.</summary>
    private sealed class LineLoggerProvider(ConcurrentQueue<string> lines) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new LineLogger(categoryName, lines);

        public void Dispose()
        {
        }
    }

    private sealed class LineLogger(string category, ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var level = logLevel switch
            {
                LogLevel.Trace => "trce",
                LogLevel.Debug => "dbug",
                LogLevel.Information => "info",
                LogLevel.Warning => "warn",
                LogLevel.Error => "fail",
                _ => "crit",
            };
            var line = $"{DateTime.UtcNow:HH:mm:ss.fff} {level}: {category}[{eventId.Id}] {eventId.Name}: {formatter(state, exception)}";
            lines.Enqueue(exception is null ? line : $"{line}\n{exception}");
        }
    }
}
