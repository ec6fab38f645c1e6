using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Engine;

/// <summary>The engine's log events; names and ids are stable so that tests and log queries can rely on them.</summary>
internal static partial class EngineLog
{
    [LoggerMessage(EventId = 100, EventName = "ModelLoaded", Level = LogLevel.Information,
        Message = "Model {Model} loaded: {Dims} dims, fingerprint {Fingerprint}, warmed in {WarmupMs} ms")]
    public static partial void ModelLoaded(this ILogger logger, string model, int dims, string fingerprint, long warmupMs);

    [LoggerMessage(EventId = 101, EventName = "ModelLoadFailed", Level = LogLevel.Error,
        Message = "Model {Model} cannot be loaded: {Reason}")]
    public static partial void ModelLoadFailed(this ILogger logger, string model, string reason);

    [LoggerMessage(EventId = 102, EventName = "StoreOnlyModelCreated", Level = LogLevel.Information,
        Message = "Store-only model {Model} created by a Put with {Dims} dims")]
    public static partial void StoreOnlyModelCreated(this ILogger logger, string model, int dims);

    [LoggerMessage(EventId = 103, EventName = "CacheInvalidated", Level = LogLevel.Information,
        Message = "Cache of {Model} ({Kind}) invalidated: {Rows} rows, {Bytes} bytes removed")]
    public static partial void CacheInvalidated(this ILogger logger, string model, string kind, long rows, long bytes);

    [LoggerMessage(EventId = 104, EventName = "WriteBackSkipped", Level = LogLevel.Information,
        Message = "{Rows} computed rows of {Model} were not written back: the cache was invalidated while they were computed")]
    public static partial void WriteBackSkipped(this ILogger logger, string model, int rows);
}
