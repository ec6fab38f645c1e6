using EmbeddingCache.Engine;
using Grpc.Health.V1;
using Grpc.HealthCheck;

namespace EmbeddingCache.Server.Hosting;

/// <summary>
/// Loads the preloaded models once the server runs (health says NOT_SERVING until then) and refuses new
/// requests when the host stops. The container disposes the engine (flushing storage) after the server drained.
/// </summary>
internal sealed partial class EngineLifetime(
    EmbeddingCacheEngine engine, HealthServiceImpl health, IHostApplicationLifetime lifetime, ILogger<EngineLifetime> logger)
    : BackgroundService
{
    /// <summary>Health is reported for the whole server ("") and for the service by its full name.</summary>
    private static readonly string[] HealthServiceNames = ["", "embeddingcache.v1.EmbeddingCache"];

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        SetHealth(HealthCheckResponse.Types.ServingStatus.NotServing);
        lifetime.ApplicationStopping.Register(() =>
        {
            SetHealth(HealthCheckResponse.Types.ServingStatus.NotServing);
            engine.BeginShutdown();
        });
        try
        {
            await engine.LoadPreloadedModelsAsync(stoppingToken).ConfigureAwait(false);
            SetHealth(HealthCheckResponse.Types.ServingStatus.Serving);
            LogReady(logger, engine.ArtifactsDirectory);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogPreloadFailed(logger, e.Message);
        }
    }

    private void SetHealth(HealthCheckResponse.Types.ServingStatus status)
    {
        foreach (var name in HealthServiceNames) health.SetStatus(name, status);
    }

    [LoggerMessage(EventId = 1, EventName = "ServerReady", Level = LogLevel.Information,
        Message = "EmbeddingCache ready: models loaded, artifacts at {Artifacts}")]
    private static partial void LogReady(ILogger logger, string artifacts);

    [LoggerMessage(EventId = 2, EventName = "PreloadFailed", Level = LogLevel.Error,
        Message = "A preloaded model failed to load, health stays NOT_SERVING: {Reason}")]
    private static partial void LogPreloadFailed(ILogger logger, string reason);
}
