using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Inference;

/// <summary>The inference room's log events; names and ids are stable so tests and dashboards can rely on them.</summary>
internal static partial class InferenceLog
{
    [LoggerMessage(EventId = 2001, EventName = "ModelLoaded", Level = LogLevel.Information,
        Message = "Loaded model {Model}: {Dims} dims, inputs [{Inputs}], output {Output}, pooling {Pooling}, then {Modules}, max tokens {MaxTokens}, {ConcurrentBatches} batches at once on {Threads} intra-op thread(s) each, in {ElapsedMs} ms")]
    public static partial void ModelLoaded(ILogger logger, string model, int dims, string inputs, string output, string pooling, string modules, int maxTokens, int concurrentBatches, int threads, long elapsedMs);

    [LoggerMessage(EventId = 2010, EventName = "BatchFailed", Level = LogLevel.Error,
        Message = "Encoding a batch of {Texts} texts for model {Model} failed")]
    public static partial void BatchFailed(ILogger logger, Exception exception, string model, int texts);

    [LoggerMessage(EventId = 2011, EventName = "BatcherStopped", Level = LogLevel.Debug,
        Message = "Batcher for model {Model} stopped after {Batches} batches, {Texts} texts")]
    public static partial void BatcherStopped(ILogger logger, string model, long batches, long texts);
}
