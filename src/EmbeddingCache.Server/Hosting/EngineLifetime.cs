using EmbeddingCache.Engine;

namespace EmbeddingCache.Server.Hosting;

/// <summary>
/// Loads the preloaded models once the server runs (health says NOT_SERVING until then) and refuses new
/// requests when the host stops. The container disposes the engine (flushing storage) after the server drained.
/// </summary>
internal sealed partial class EngineLifetime(
    EmbeddingCacheEngine engine, IHostApplicationLifetime lifetime, ILogger<EngineLifetime> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        lifetime.ApplicationStopping.Register(engine.BeginShutdown);
        try
        {
            await engine.LoadPreloadedModelsAsync(stoppingToken).ConfigureAwait(false);
            LogReady(logger, engine.ArtifactsDirectory);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogPreloadFailed(logger, e.Message);
        }
    }

    [LoggerMessage(EventId = 1, EventName = "ServerReady", Level = LogLevel.Information,
        Message = "EmbeddingCache ready: models loaded, artifacts at {Artifacts}")]
    private static partial void LogReady(ILogger logger, string artifacts);

    [LoggerMessage(EventId = 2, EventName = "PreloadFailed", Level = LogLevel.Error,
        Message = "A preloaded model failed to load, health stays NOT_SERVING: {Reason}")]
    private static partial void LogPreloadFailed(ILogger logger, string reason);
}
