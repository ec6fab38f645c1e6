using EmbeddingCache.Engine;
using EmbeddingCache.Server.OpenAi;
using EmbeddingCache.Server.Services;
using Grpc.AspNetCore.Server.Model;
using Grpc.HealthCheck;
using Prometheus;
using Microsoft.Extensions.Options;

namespace EmbeddingCache.Server.Hosting;

/// <summary>Wires the engine, the gRPC services, health and reflection.</summary>
public static class ServiceCollectionExtensions
{
    /// <summary>Adds everything the embcache server serves, with options bound from <paramref name="configuration"/>.</summary>
    public static IServiceCollection AddEmbeddingCache(this IServiceCollection services, IConfiguration configuration)
    {
        var section = configuration.GetSection(ServerOptions.Section);
        services.AddOptions<EngineOptions>().Bind(section).ValidateOnStart();
        services.AddOptions<ServerOptions>().Bind(section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<EngineOptions>, SettingsValidator>();
        services.AddSingleton<IValidateOptions<ServerOptions>, SettingsValidator>();

        // Opening the engine takes the artifacts root's writer lock: a second server fails here, before it listens.
        services.AddSingleton(provider => EmbeddingCacheEngine.Open(
            provider.GetRequiredService<IOptions<EngineOptions>>().Value,
            provider.GetRequiredService<ILoggerFactory>()));
        services.AddHostedService<EngineLifetime>();
        services.AddSingleton<ApiKey>();

        var serverOptions = section.Get<ServerOptions>() ?? new ServerOptions();
        var engineOptions = section.Get<EngineOptions>() ?? new EngineOptions();
        services.AddGrpc(grpc =>
        {
            grpc.MaxReceiveMessageSize = serverOptions.MaxReceiveMessageBytes;
            // The engine refuses an Embed or Get whose reply would not fit before it gathers a row; this bounds the rest.
            grpc.MaxSendMessageSize = engineOptions.MaxSendMessageBytes;
            grpc.Interceptors.Add<MetricsInterceptor>();
            grpc.Interceptors.Add<ApiKeyInterceptor>();
            grpc.Interceptors.Add<CacheErrorInterceptor>();
        });
        // Grpc.AspNetCore's own binder answers a request protobuf cannot parse as UNKNOWN, logged as a server error.
        services.Remove(services.Single(d => d.ServiceType == typeof(IServiceMethodProvider<>) && d.ImplementationType?.Name == "BinderServiceMethodProvider`1"));
        services.AddSingleton(typeof(IServiceMethodProvider<>), typeof(ParsingServiceMethodProvider<>));
        services.AddGrpcReflection();
        services.AddSingleton<CacheMetrics>();
        if (serverOptions.MetricsPort is > 0 and <= ushort.MaxValue)
        {
            services.AddMetricServer(metrics =>
            {
                metrics.Hostname = "127.0.0.1";
                metrics.Port = (ushort)serverOptions.MetricsPort;
            });
        }
        if (serverOptions.OpenAiPort > 0) services.AddHostedService<OpenAiEndpoint>();
        // The standard grpc.health.v1 service; EngineLifetime sets SERVING once the preloaded models are warm.
        services.AddSingleton<HealthServiceImpl>();
        return services;
    }
}
