namespace EmbeddingCache.Inference;

/// <summary>
/// How a model is run: ONNX Runtime threads and how the batcher forms batches. The defaults suit a CPU
/// server with a few cores and BERT-sized models.
/// </summary>
public sealed class EncoderOptions
{
    /// <summary>
    /// Batches run at once, each on its own worker thread over the one session. 0 (the default) means one per core, up
    /// to 2: on 2 cores, two batches on one intra-op thread each beat one batch on two threads (no barrier between the
    /// threads of an operator, so a thread the request threads preempt stalls only its own batch; see
    /// benchmarks/results/miss-path.md).
    /// </summary>
    public int ConcurrentBatches { get; set; }

    /// <summary>ONNX Runtime intra-op threads per batch; 0 (the default) shares the cores among the concurrent batches.</summary>
    public int IntraOpThreads { get; set; }

    /// <summary>
    /// Whether idle intra-op threads spin waiting for work (ONNX Runtime's session.intra_op.allow_spinning). Off by
    /// default: on a few cores a spinning thread takes the core that request threads need (tokenizing, writing back,
    /// answering) and stalls the batch it belongs to; benchmarks/results/onnx-settings.md measured it.
    /// </summary>
    public bool IntraOpSpinning { get; set; }

    /// <summary>
    /// Padded tokens per batch (batch size times its longest member). 16384 keeps a batch's activations
    /// small enough for the CPU caches to matter while amortising the per-run overhead.
    /// </summary>
    public int TokenBudget { get; set; } = 16384;

    /// <summary>The most texts in one batch, whatever their length. 64 by default.</summary>
    public int MaxBatchSize { get; set; } = 64;

    /// <summary>
    /// How long the batcher waits for more work before running a partial batch. 2 ms by default: small next
    /// to a batch's run time, long enough for concurrent callers' texts to meet.
    /// </summary>
    public TimeSpan MaxBatchDelay { get; set; } = TimeSpan.FromMilliseconds(2);

    /// <summary>
    /// The most texts waiting in one batcher; beyond it new work waits for room (see <see cref="MaxQueueWait"/>)
    /// instead of growing the queue. 100,000 by default: about 15 minutes of work for a small model on 2 cores.
    /// </summary>
    public int MaxQueuedTexts { get; set; } = 100_000;

    /// <summary>
    /// How long new work waits for room in a full queue before its caller gets <see cref="EncoderSaturatedException"/>
    /// (RESOURCE_EXHAUSTED). 5 s by default: long enough to ride out a burst without failing, short enough that a
    /// client hears back and backs off well before typical deadlines.
    /// </summary>
    public TimeSpan MaxQueueWait { get; set; } = TimeSpan.FromSeconds(5);

    internal int EffectiveConcurrentBatches => ConcurrentBatches > 0 ? ConcurrentBatches : Math.Clamp(Environment.ProcessorCount, 1, 2);

    internal int EffectiveIntraOpThreads => IntraOpThreads > 0 ? IntraOpThreads : Math.Max(1, Environment.ProcessorCount / EffectiveConcurrentBatches);

    /// <summary>
    /// Every setting out of range, each as "<c>Setting is value; it must be …</c>", so that a person reading it
    /// knows which setting to change and to what. Empty when the options are usable.
    /// </summary>
    public IEnumerable<string> Problems()
    {
        if (ConcurrentBatches < 0)
        {
            yield return $"{nameof(ConcurrentBatches)} is {ConcurrentBatches}; it must be 0 (one per core, up to 2) or more";
        }
        if (IntraOpThreads < 0)
        {
            yield return $"{nameof(IntraOpThreads)} is {IntraOpThreads}; it must be 0 (the cores shared among the concurrent batches) or more";
        }
        if (TokenBudget < 1)
        {
            yield return $"{nameof(TokenBudget)} is {TokenBudget}; it must be at least 1";
        }
        if (MaxBatchSize < 1)
        {
            yield return $"{nameof(MaxBatchSize)} is {MaxBatchSize}; it must be at least 1";
        }
        if (MaxBatchDelay < TimeSpan.Zero)
        {
            yield return $"{nameof(MaxBatchDelay)} is {MaxBatchDelay}; it must not be negative";
        }
        if (MaxQueuedTexts < 1)
        {
            yield return $"{nameof(MaxQueuedTexts)} is {MaxQueuedTexts}; it must be at least 1";
        }
        if (MaxQueueWait < TimeSpan.Zero)
        {
            yield return $"{nameof(MaxQueueWait)} is {MaxQueueWait}; it must not be negative";
        }
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> with the first of <see cref="Problems"/>.</summary>
    internal void Validate()
    {
        if (Problems().FirstOrDefault() is { } problem)
        {
            throw new ArgumentOutOfRangeException(paramName: null, problem);
        }
    }
}
