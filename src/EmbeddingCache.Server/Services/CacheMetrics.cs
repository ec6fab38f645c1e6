using System.Diagnostics.Metrics;
using EmbeddingCache.Engine;
using EmbeddingCache.Inference;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Prometheus;

namespace EmbeddingCache.Server.Services;

/// <summary>
/// Prometheus metrics, served on their own port (<c>EmbeddingCache:MetricsPort</c>): rows by model, kind and
/// where they came from (hit rate = cached / (cached + computed + missing)), bytes served and written, time
/// per stage, latency and errors per RPC, disk bytes per model, read when Prometheus scrapes, and the size,
/// padding and run time of every batch, forwarded from the batchers' <see cref="EncoderMeter"/>.
/// </summary>
internal sealed class CacheMetrics : IDisposable
{
    private static readonly Counter Rows = Metrics.CreateCounter(
        "embcache_rows_total", "Rows answered, by model, kind and source (cached, computed, missing).", "model", "kind", "source");

    private static readonly Counter BytesServed = Metrics.CreateCounter(
        "embcache_bytes_served_total", "Vector bytes sent to clients.", "model");

    private static readonly Counter RowsWritten = Metrics.CreateCounter(
        "embcache_rows_written_total", "Rows stored by Put.", "model");

    private static readonly Histogram StageSeconds = Metrics.CreateHistogram(
        "embcache_stage_seconds", "Time one request spent per stage of Embed (lookup, tokenize, queue, inference, write); _sum is the total.",
        new HistogramConfiguration { LabelNames = ["model", "stage"], Buckets = Histogram.ExponentialBuckets(0.00005, 2, 20) });

    private static readonly Gauge DiskBytes = Metrics.CreateGauge(
        "embcache_disk_bytes", "Bytes of cache files on disk, by model.", "model");

    // The batchers' figures under names and buckets chosen here, by the name of the instrument that reports them.
    private static readonly Dictionary<string, Histogram> BatchHistograms = new()
    {
        ["embcache.batch.texts"] = Metrics.CreateHistogram(
            "embcache_batch_texts", "Texts per batch run through ONNX Runtime.",
            new HistogramConfiguration { LabelNames = ["model"], Buckets = Histogram.ExponentialBuckets(1, 2, 9) }),
        ["embcache.batch.tokens"] = Metrics.CreateHistogram(
            "embcache_batch_tokens", "Token positions per batch, padding included.",
            new HistogramConfiguration { LabelNames = ["model"], Buckets = Histogram.ExponentialBuckets(16, 2, 12) }),
        ["embcache.batch.padding"] = Metrics.CreateHistogram(
            "embcache_batch_padding_ratio", "Share of a batch's token positions that are padding.",
            new HistogramConfiguration { LabelNames = ["model"], Buckets = Histogram.LinearBuckets(0.05, 0.05, 19) }),
        ["embcache.batch.duration"] = Metrics.CreateHistogram(
            "embcache_batch_seconds", "Seconds a batch spent in ONNX Runtime and pooling.",
            new HistogramConfiguration { LabelNames = ["model"], Buckets = Histogram.ExponentialBuckets(0.001, 2, 14) }),
    };

    private readonly MeterListener batches = new();

    public CacheMetrics(EmbeddingCacheEngine engine)
    {
        Metrics.DefaultRegistry.AddBeforeCollectCallback(() =>
        {
            foreach (var model in engine.ListModels()) DiskBytes.WithLabels(model.Name).Set(model.Bytes);
        });
        // The batch figures are published once, under the names above, not again by prometheus-net's own adapter.
        Metrics.ConfigureMeterAdapter(adapter => adapter.InstrumentFilterPredicate = instrument => instrument.Meter.Name != EncoderMeter.Name);
        batches.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == EncoderMeter.Name && BatchHistograms.ContainsKey(instrument.Name)) listener.EnableMeasurementEvents(instrument);
        };
        batches.SetMeasurementEventCallback<int>((instrument, value, tags, _) => ObserveBatch(instrument, value, tags));
        batches.SetMeasurementEventCallback<double>((instrument, value, tags, _) => ObserveBatch(instrument, value, tags));
        batches.Start();
    }

    public void Dispose() => batches.Dispose();

    private static void ObserveBatch(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var model = "";
        foreach (var tag in tags)
        {
            if (tag.Key == "model") model = tag.Value as string ?? "";
        }
        BatchHistograms[instrument.Name].WithLabels(model).Observe(value);
    }

    public static void Answered(string model, Storage.VectorKind kind, LookupResult result)
    {
        var kindLabel = Storage.VectorKindNames.Name(kind);
        foreach (var source in new[] { Engine.RowSource.Cached, Engine.RowSource.Computed, Engine.RowSource.Missing })
        {
            var count = result.CountOf(source);
            if (count > 0) Rows.WithLabels(model, kindLabel, source.ToString().ToLowerInvariant()).Inc(count);
        }
        BytesServed.WithLabels(model).Inc(result.Vectors.Data.Length);
        var timings = result.Timings;
        foreach (var (stage, elapsed) in new[] { ("lookup", timings.Lookup), ("tokenize", timings.Tokenize), ("queue", timings.Queue), ("inference", timings.Inference), ("write", timings.Write) })
        {
            if (elapsed > TimeSpan.Zero) StageSeconds.WithLabels(model, stage).Observe(elapsed.TotalSeconds);
        }
    }

    public static void Stored(string model, int rows) => RowsWritten.WithLabels(model).Inc(rows);
}

/// <summary>Latency and outcome of every RPC, by method and status code.</summary>
internal sealed class MetricsInterceptor : Interceptor
{
    private static readonly Histogram Latency = Metrics.CreateHistogram(
        "embcache_rpc_duration_seconds", "Time to answer an RPC.",
        new HistogramConfiguration { LabelNames = ["method"], Buckets = Histogram.ExponentialBuckets(0.00005, 2, 20) });

    private static readonly Counter Calls = Metrics.CreateCounter(
        "embcache_rpc_total", "RPCs answered, by method and gRPC status code.", "method", "code");

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        using var timer = Latency.WithLabels(context.Method).NewTimer();
        try
        {
            var response = await continuation(request, context).ConfigureAwait(false);
            Calls.WithLabels(context.Method, nameof(StatusCode.OK)).Inc();
            return response;
        }
        catch (Exception e)
        {
            CountFailure(context.Method, e);
            throw;
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
            Calls.WithLabels(context.Method, nameof(StatusCode.OK)).Inc();
        }
        catch (Exception e)
        {
            CountFailure(context.Method, e);
            throw;
        }
    }

    /// <summary>A failed call counts under its gRPC status; anything else surfaces to clients as UNKNOWN.</summary>
    private static void CountFailure(string method, Exception error) =>
        Calls.WithLabels(method, error is RpcException rpc ? rpc.StatusCode.ToString() : nameof(StatusCode.Unknown)).Inc();
}
