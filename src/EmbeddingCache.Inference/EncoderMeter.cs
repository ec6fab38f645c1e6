using System.Diagnostics.Metrics;

namespace EmbeddingCache.Inference;

/// <summary>
/// Figures of every batch the batchers run, as .NET metrics, so that batching can be judged in production (are
/// batches full? how much padding?) without this room knowing who publishes them; the server exports them to
/// Prometheus.
/// </summary>
public static class EncoderMeter
{
    /// <summary>The meter's name, for listeners and exporters.</summary>
    public const string Name = "EmbeddingCache.Inference";

    private static readonly Meter Meter = new(Name);

    /// <summary>Texts per batch.</summary>
    internal static readonly Histogram<int> BatchTexts = Meter.CreateHistogram<int>(
        "embcache.batch.texts", "{text}", "Texts per batch run through ONNX Runtime.");

    /// <summary>Token positions per batch, padding included: what ONNX Runtime computes.</summary>
    internal static readonly Histogram<int> BatchTokens = Meter.CreateHistogram<int>(
        "embcache.batch.tokens", "{token}", "Token positions per batch, padding included.");

    /// <summary>Share of a batch's token positions that are padding.</summary>
    internal static readonly Histogram<double> BatchPadding = Meter.CreateHistogram<double>(
        "embcache.batch.padding", "1", "Share of a batch's token positions that are padding.");

    /// <summary>Seconds one batch spent in ONNX Runtime and pooling.</summary>
    internal static readonly Histogram<double> BatchDuration = Meter.CreateHistogram<double>(
        "embcache.batch.duration", "s", "Seconds a batch spent in ONNX Runtime and pooling.");
}
