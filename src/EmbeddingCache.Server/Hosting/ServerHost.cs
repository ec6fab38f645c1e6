using EmbeddingCache.Engine;
using EmbeddingCache.Server.Services;
using Grpc.HealthCheck;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;

namespace EmbeddingCache.Server.Hosting;

/// <summary>Builds and runs the gRPC server: Kestrel on loopback, the services, health and reflection.</summary>
public static partial class ServerHost
{
    /// <summary>gRPC's customary port, on loopback only unless configured otherwise.</summary>
    public const string DefaultUrl = "http://127.0.0.1:50051";

    /// <summary>A gRPC message travels behind a compressed flag and its 4-byte length.</summary>
    private const int GrpcMessagePrefixBytes = 5;

    /// <summary>The flag that starts a read-only follower (<see cref="FollowOptions"/>).</summary>
    public const string FollowSwitch = "--follow";

    /// <summary>Command-line switches that are shorter than their configuration keys.</summary>
    private static readonly Dictionary<string, string> SwitchMappings = new()
    {
        ["--artifacts"] = $"{ServerOptions.Section}:{nameof(EngineOptions.ArtifactsDirectory)}",
        [FollowSwitch] = $"{ServerOptions.Section}:{nameof(EngineOptions.Follow)}:{nameof(FollowOptions.Enabled)}",
    };

    /// <summary>Runs the server until it is stopped (Ctrl+C, SIGTERM); returns the exit code.</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        WebApplication app;
        try
        {
            app = Build(args);
        }
        catch (IOException e)
        {
            // The artifacts root cannot be opened (another writer holds it, it is read-only): one clear line, no stack trace.
            await Console.Error.WriteLineAsync($"embcache: {e.Message}").ConfigureAwait(false);
            return 1;
        }
        catch (OptionsValidationException e)
        {
            // Bad settings: each one on its own line, naming the setting, its value and what it must be.
            foreach (var problem in e.Failures)
            {
                await Console.Error.WriteLineAsync($"embcache: {problem}").ConfigureAwait(false);
            }
            return 1;
        }
        await app.RunAsync().ConfigureAwait(false);
        return 0;
    }

    /// <summary>
    /// A cache reachable from other machines without an API key lets anyone read and overwrite it: say so,
    /// loudly, at every start.
    /// </summary>
    private static void WarnIfExposed(WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<ServerOptions>>().Value;
        if (!string.IsNullOrEmpty(options.ApiKey)) return;
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("EmbeddingCache.Server");
        foreach (var url in app.Urls.Where(url => !IsLoopback(url)))
        {
            ExposedWithoutApiKey(logger, url);
        }
    }

    /// <summary>True for URLs whose host only this machine can reach (127.0.0.0/8, ::1, localhost).</summary>
    public static bool IsLoopback(string url)
    {
        if (!Uri.TryCreate(url.Replace("://*", "://0.0.0.0", StringComparison.Ordinal).Replace("://+", "://0.0.0.0", StringComparison.Ordinal),
                UriKind.Absolute, out var uri))
        {
            return false;
        }
        if (uri.IsLoopback) return true;
        return System.Net.IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address) && System.Net.IPAddress.IsLoopback(address);
    }

    [LoggerMessage(EventId = 3, EventName = "ExposedWithoutApiKey", Level = LogLevel.Warning,
        Message = "!!! Listening on {Url}, which other machines can reach, with no API key: anyone who reaches it can read and overwrite this cache. " +
                  "Set EmbeddingCache:ApiKey (and TLS certificates) or listen on 127.0.0.1.")]
    private static partial void ExposedWithoutApiKey(ILogger logger, string url);

    /// <summary>Configures the host from appsettings.json, environment variables and the command line, in the ASP.NET Core way.</summary>
    public static WebApplication Build(string[] args)
    {
        // ASP.NET Core's command line takes the token after a switch as its value: a bare flag must carry its own.
        args = [.. args.Select(arg => arg == FollowSwitch ? $"{FollowSwitch}=true" : arg)];
        // appsettings.json ships beside the executable; relative paths (./artifacts) stay relative to where it runs.
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.AddCommandLine(args, SwitchMappings);
        if (string.IsNullOrEmpty(builder.Configuration[WebHostDefaults.ServerUrlsKey]))
        {
            builder.WebHost.UseUrls(DefaultUrl);
        }
        var section = builder.Configuration.GetSection(ServerOptions.Section);
        var serverOptions = section.Get<ServerOptions>() ?? new ServerOptions();
        // Every bad setting is reported at once, before Kestrel takes any of them or the engine locks the artifacts root.
        SettingsValidator.ThrowIfInvalid(section.Get<EngineOptions>() ?? new EngineOptions(), serverOptions);
        // gRPC without TLS needs HTTP/2 without the upgrade dance (h2c) on every endpoint.
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.ConfigureEndpointDefaults(endpoint => endpoint.Protocols = HttpProtocols.Http2);
            // An oversize message is refused from its 5-byte header, but what the client already sent is still read
            // and dropped: a small window keeps a flood of oversize messages cheap (benchmarks/results/lab-notes.md).
            kestrel.Limits.Http2.InitialStreamWindowSize = serverOptions.Http2StreamWindowBytes;
            // Kestrel's own 30,000,000-byte body limit would cut a unary call below MaxReceiveMessageBytes with an
            // UNKNOWN; a unary body is one message and its 5-byte gRPC prefix. (gRPC lifts the limit on streaming calls,
            // whose every message MaxReceiveMessageBytes bounds.)
            kestrel.Limits.MaxRequestBodySize = serverOptions.MaxReceiveMessageBytes + (long)GrpcMessagePrefixBytes;
        });
        builder.Logging.AddConsole(console => console.FormatterName = EventNameConsoleFormatter.FormatterName)
            .AddConsoleFormatter<EventNameConsoleFormatter, ConsoleFormatterOptions>();

        builder.Services.AddEmbeddingCache(builder.Configuration);

        var app = builder.Build();
        app.Services.GetRequiredService<CacheMetrics>();
        // Recovery of the caches on disk runs while Kestrel starts: the first hit comes that much sooner.
        app.Services.GetRequiredService<EmbeddingCacheEngine>().BeginOpeningCaches();
        app.Lifetime.ApplicationStarted.Register(() => WarnIfExposed(app));
        app.UseMiddleware<RefusalBrakeMiddleware>();
        app.UseMiddleware<MessageSizeStatusMiddleware>();
        app.MapGrpcService<EmbeddingCacheService>();
        app.MapGrpcService<HealthServiceImpl>();
        app.MapGrpcReflectionService();
        return app;
    }
}
