using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Storage;

/// <summary>Log events of the storage engine. Event ids and names are stable: tests and operators match on them.</summary>
internal static partial class StorageLog
{
    [LoggerMessage(EventId = 1001, EventName = "ArtifactsOpened", Level = LogLevel.Information,
        Message = "Opened artifacts directory {Root} as its single writer (pid {ProcessId})")]
    public static partial void ArtifactsOpened(ILogger logger, string root, int processId);

    /// <summary>
    /// Open time and index memory of a cache, for operators and the hit benchmark, which reads the fields by name:
    /// ElapsedMs from the start of the open to the index being ready, IndexBytes of both kinds' key and id
    /// indexes, and IndexBytesPerEntry = IndexBytes over the entries of the fuller index of each kind.
    /// </summary>
    [LoggerMessage(EventId = 1002, EventName = "CacheOpened", Level = LogLevel.Information,
        Message = "Opened cache {Model}: {QueryRows} query rows, {DocumentRows} document rows, {Segments} segments in {ElapsedMs} ms; index {IndexBytes} bytes, {IndexBytesPerEntry} per entry")]
    public static partial void CacheOpened(ILogger logger, string model, long queryRows, long documentRows, int segments, long elapsedMs, long indexBytes, double indexBytesPerEntry);

    [LoggerMessage(EventId = 1003, EventName = "CacheCreated", Level = LogLevel.Information,
        Message = "Created cache {Model}: {Dims} dims, dtype {DType}, fingerprint '{Fingerprint}'")]
    public static partial void CacheCreated(ILogger logger, string model, int dims, string dtype, string fingerprint);

    [LoggerMessage(EventId = 1004, EventName = "FingerprintChanged", Level = LogLevel.Warning,
        Message = "Model {Model} changed (fingerprint '{OldFingerprint}' -> '{NewFingerprint}', dims {OldDims} -> {NewDims}, dtype {OldDType} -> {NewDType}): dropped {RowsRemoved} cached vectors so none made by the old model is served")]
    public static partial void FingerprintChanged(ILogger logger, string model, string oldFingerprint, string newFingerprint, int oldDims, int newDims, string oldDType, string newDType, long rowsRemoved);

    [LoggerMessage(EventId = 1005, EventName = "CacheInvalidated", Level = LogLevel.Information,
        Message = "Invalidated {Model}/{Kind}: {RowsRemoved} rows, {BytesRemoved} bytes removed; generation {Generation}")]
    public static partial void CacheInvalidated(ILogger logger, string model, string kind, long rowsRemoved, long bytesRemoved, long generation);

    [LoggerMessage(EventId = 1006, EventName = "SegmentTailTruncated", Level = LogLevel.Warning,
        Message = "Recovered {Model}/{Kind}/{File}: header said {HeaderRows} rows and the file fits {FittingRows}; kept {KeptRows} rows with complete sidecar records and dropped {DroppedSidecarBytes} sidecar bytes past them (the tail of an interrupted write)")]
    public static partial void SegmentTailTruncated(ILogger logger, string model, string kind, string file, int headerRows, long fittingRows, int keptRows, long droppedSidecarBytes);

    [LoggerMessage(EventId = 1007, EventName = "QuarantinedFile", Level = LogLevel.Warning,
        Message = "Quarantined {Model}/{Kind}/{File} to {Destination}: {Reason}")]
    public static partial void QuarantinedFile(ILogger logger, string model, string kind, string file, string destination, string reason);

    [LoggerMessage(EventId = 1008, EventName = "SegmentSealed", Level = LogLevel.Debug,
        Message = "Sealed {Model}/{Kind}/{File} with {Rows} rows")]
    public static partial void SegmentSealed(ILogger logger, string model, string kind, string file, int rows);

    [LoggerMessage(EventId = 1009, EventName = "StorageFull", Level = LogLevel.Error,
        Message = "Disk full while appending {Rows} rows to {Model}/{Kind}; none of them was committed")]
    public static partial void StorageFull(ILogger logger, string model, string kind, int rows);

    [LoggerMessage(EventId = 1010, EventName = "AppendFailed", Level = LogLevel.Error,
        Message = "Appending {Rows} rows to {Model}/{Kind} failed")]
    public static partial void AppendFailed(ILogger logger, Exception exception, string model, string kind, int rows);

    [LoggerMessage(EventId = 1011, EventName = "TrashNotDeleted", Level = LogLevel.Warning,
        Message = "Could not delete {Path}; it is retried on the next open")]
    public static partial void TrashNotDeleted(ILogger logger, Exception exception, string path);

    [LoggerMessage(EventId = 1012, EventName = "ManifestNotWritten", Level = LogLevel.Warning,
        Message = "Could not write the manifest of {Model}; the vectors are unaffected")]
    public static partial void ManifestNotWritten(ILogger logger, Exception exception, string model);

    [LoggerMessage(EventId = 1014, EventName = "CacheWarmingStarted", Level = LogLevel.Information,
        Message = "Warming cache {Model} in the background: {Bytes} bytes of vectors at up to {BytesPerSecond} bytes/s")]
    public static partial void CacheWarmingStarted(ILogger logger, string model, long bytes, long bytesPerSecond);

    [LoggerMessage(EventId = 1015, EventName = "CacheWarmed", Level = LogLevel.Information,
        Message = "Warmed cache {Model}: {Bytes} bytes of vectors in {ElapsedMs} ms")]
    public static partial void CacheWarmed(ILogger logger, string model, long bytes, long elapsedMs);

    [LoggerMessage(EventId = 1013, EventName = "TemporaryFileDeleted", Level = LogLevel.Debug,
        Message = "Deleted leftover temporary file {Model}/{File}")]
    public static partial void TemporaryFileDeleted(ILogger logger, string model, string file);

    [LoggerMessage(EventId = 1016, EventName = "FollowerGenerationServed", Level = LogLevel.Information,
        Message = "Following {Model}/{Kind}: now serving generation {Generation} (was {Previous}), {Rows} rows")]
    public static partial void FollowerGenerationServed(ILogger logger, string model, string kind, long generation, long previous, long rows);

    [LoggerMessage(EventId = 1017, EventName = "FollowerProblem", Level = LogLevel.Warning,
        Message = "Following {Model}/{Kind}: {Problem}; the last good state keeps being served")]
    public static partial void FollowerProblem(ILogger logger, string model, string kind, string problem);

    [LoggerMessage(EventId = 1018, EventName = "FollowerOpened", Level = LogLevel.Information,
        Message = "Following the artifacts root {Root} read-only (no lock taken, nothing written), polling every {PollIntervalMs} ms")]
    public static partial void FollowerOpened(ILogger logger, string root, long pollIntervalMs);
}
