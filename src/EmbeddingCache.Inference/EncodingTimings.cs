namespace EmbeddingCache.Inference;

/// <summary>Where one <see cref="EncodingBatcher"/> call's time went, so a slow call can be explained.</summary>
/// <param name="Tokenize">Tokenizing the call's texts, on the caller's thread.</param>
/// <param name="Queue">From queueing until the first batch carrying one of its texts started.</param>
/// <param name="Inference">In the batches that carried its texts (ONNX Runtime and pooling; batches are shared with other callers).</param>
/// <param name="Batches">How many batches carried its texts.</param>
public readonly record struct EncodingTimings(TimeSpan Tokenize, TimeSpan Queue, TimeSpan Inference, int Batches);
