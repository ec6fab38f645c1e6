using EmbeddingCache.Engine;
using EmbeddingCache.Server.Services;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace EmbeddingCache.Server.Hosting;

/// <summary>Wires the engine, the gRPC services, health and reflection.</summary>
public static class ServiceCollectionExtensions
{
    /// <summary>Adds everything the embcache server serves, with options bound from <paramref name="configuration"/>.</summary>
    public static IServiceCollection AddEmbeddingCache(this IServiceCollection services, IConfiguration configuration)
    {
        var section = configuration.GetSection(ServerOptions.Section);
        services.AddOptions<EngineOptions>().Bind(section)
            .Validate(o => o.Validate() is null, "invalid EmbeddingCache settings")
            .ValidateOnStart();
        services.AddOptions<ServerOptions>().Bind(section);

        // Opening the engine takes the artifacts root's writer lock: a second server fails here, before it listens.
        services.AddSingleton(provider => EmbeddingCacheEngine.Open(
            provider.GetRequiredService<IOptions<EngineOptions>>().Value,
            provider.GetRequiredService<ILoggerFactory>()));
        services.AddHostedService<EngineLifetime>();

        var serverOptions = section.Get<ServerOptions>() ?? new ServerOptions();
        services.AddGrpc(grpc =>
        {
            grpc.MaxReceiveMessageSize = serverOptions.MaxReceiveMessageBytes;
            grpc.MaxSendMessageSize = null;
            grpc.Interceptors.Add<CacheErrorInterceptor>();
        });
        services.AddGrpcReflection();
        services.AddGrpcHealthChecks()
            .AddCheck<ModelsReadyHealthCheck>("models");
        return services;
    }

    /// <summary>Healthy once the preloaded models are loaded and warmed.</summary>
    private sealed class ModelsReadyHealthCheck(EmbeddingCacheEngine engine) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken) =>
            Task.FromResult(engine.Ready
                ? HealthCheckResult.Healthy("models loaded")
                : HealthCheckResult.Unhealthy("models loading"));
    }
}
