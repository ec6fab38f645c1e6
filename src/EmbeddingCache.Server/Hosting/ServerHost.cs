using EmbeddingCache.Engine;
using EmbeddingCache.Server.Services;
using Grpc.HealthCheck;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace EmbeddingCache.Server.Hosting;

/// <summary>Builds and runs the gRPC server: Kestrel on loopback, the services, health and reflection.</summary>
public static class ServerHost
{
    /// <summary>gRPC's customary port, on loopback only unless configured otherwise.</summary>
    public const string DefaultUrl = "http://127.0.0.1:50051";

    /// <summary>Command-line switches that are shorter than their configuration keys.</summary>
    private static readonly Dictionary<string, string> SwitchMappings = new()
    {
        ["--artifacts"] = $"{ServerOptions.Section}:{nameof(EngineOptions.ArtifactsDirectory)}",
    };

    /// <summary>Runs the server until it is stopped (Ctrl+C, SIGTERM); returns the exit code.</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        var app = Build(args);
        await app.RunAsync().ConfigureAwait(false);
        return 0;
    }

    /// <summary>Configures the host from appsettings.json, environment variables and the command line, in the ASP.NET Core way.</summary>
    public static WebApplication Build(string[] args)
    {
        // appsettings.json ships beside the executable; relative paths (./artifacts) stay relative to where it runs.
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.AddCommandLine(args, SwitchMappings);
        if (string.IsNullOrEmpty(builder.Configuration[WebHostDefaults.ServerUrlsKey]))
        {
            builder.WebHost.UseUrls(DefaultUrl);
        }
        // gRPC without TLS needs HTTP/2 without the upgrade dance (h2c) on every endpoint.
        builder.WebHost.ConfigureKestrel(kestrel =>
            kestrel.ConfigureEndpointDefaults(endpoint => endpoint.Protocols = HttpProtocols.Http2));
        builder.Logging.AddSimpleConsole(console =>
        {
            console.SingleLine = true;
            console.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            console.UseUtcTimestamp = true;
        });

        builder.Services.AddEmbeddingCache(builder.Configuration);

        var app = builder.Build();
        app.MapGrpcService<EmbeddingCacheService>();
        app.MapGrpcService<HealthServiceImpl>();
        app.MapGrpcReflectionService();
        return app;
    }
}
