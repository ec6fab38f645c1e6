using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Engine;

/// <summary>The engine's log events; names and ids are stable so that tests and log queries can rely on them.</summary>
internal static partial class EngineLog
{
    [LoggerMessage(EventId = 100, EventName = "ModelLoaded", Level = LogLevel.Information,
        Message = "Model {Model} ready: {Dims} dims, fingerprint {Fingerprint}")]
    public static partial void ModelLoaded(this ILogger logger, string model, int dims, string fingerprint);

    [LoggerMessage(EventId = 101, EventName = "ModelLoadFailed", Level = LogLevel.Error,
        Message = "Model {Model} cannot be loaded: {Reason}")]
    public static partial void ModelLoadFailed(this ILogger logger, string model, string reason);

    [LoggerMessage(EventId = 102, EventName = "StoreOnlyModelCreated", Level = LogLevel.Information,
        Message = "Store-only model {Model} created by a Put with {Dims} dims, stored as {DType}")]
    public static partial void StoreOnlyModelCreated(this ILogger logger, string model, int dims, string dtype);

    [LoggerMessage(EventId = 103, EventName = "CacheInvalidated", Level = LogLevel.Information,
        Message = "Cache of {Model} ({Kind}) invalidated: {Rows} rows, {Bytes} bytes removed")]
    public static partial void CacheInvalidated(this ILogger logger, string model, string kind, long rows, long bytes);

    [LoggerMessage(EventId = 104, EventName = "WriteBackSkipped", Level = LogLevel.Information,
        Message = "{Rows} computed rows of {Model} were not written back: the cache was invalidated while they were computed")]
    public static partial void WriteBackSkipped(this ILogger logger, string model, int rows);

    [LoggerMessage(EventId = 105, EventName = "ModelChanged", Level = LogLevel.Warning,
        Message = "Model {Model} changed on disk: {Reason}; its old vectors will not be served")]
    public static partial void ModelChanged(this ILogger logger, string model, string reason);

    [LoggerMessage(EventId = 106, EventName = "EncoderUnloaded", Level = LogLevel.Information,
        Message = "Encoder of {Model} unloaded after {IdleFor} idle; its cache keeps serving hits")]
    public static partial void EncoderUnloaded(this ILogger logger, string model, TimeSpan idleFor);

    [LoggerMessage(EventId = 108, EventName = "StorageDTypeKept", Level = LogLevel.Warning,
        Message = "Model {Model} asks for storage_dtype {Asked}, but its cache holds {Rows} rows stored as {Stored}: they are kept as they are, and the new dtype applies once the cache is invalidated")]
    public static partial void StorageDTypeKept(this ILogger logger, string model, string asked, long rows, string stored);

    [LoggerMessage(EventId = 107, EventName = "CacheOpenFailed", Level = LogLevel.Error,
        Message = "The cache of {Model} could not be opened at start ({Reason}); the other models are served")]
    public static partial void CacheOpenFailed(this ILogger logger, string model, string reason);

    [LoggerMessage(EventId = 120, EventName = "SnapshotRefused", Level = LogLevel.Error,
        Message = "Model {Model} is refused, nothing is deleted: {Reason}")]
    public static partial void SnapshotRefused(this ILogger logger, string model, string reason);
}
