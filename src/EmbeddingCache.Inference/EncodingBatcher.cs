using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Inference;

/// <summary>
/// One per loaded model: gathers the texts of all concurrent callers, sorts them by token count so that batches
/// carry little padding, cuts them into batches by <see cref="EncoderOptions.TokenBudget"/>, runs them on the
/// encoder and hands each caller its rows in input order.
/// </summary>
/// <remarks>
/// This file is the callers' side: admission to the bounded queue (<see cref="WeightedFifoSemaphore"/>), then
/// tokenizing on the caller's own thread, so tokenization overlaps the batches ONNX Runtime is running, then queueing.
/// The workers that plan (<see cref="BatchPlanner"/>) and run the batches are in EncodingBatcher.Workers.cs. The
/// batcher does not own the encoder.
/// </remarks>
public sealed partial class EncodingBatcher : IAsyncDisposable
{
    private readonly EncoderOptions _options;
    private readonly ILogger _logger;
    private readonly WeightedFifoSemaphore _room;

    // Guards the queue of texts not yet planned and the stopping flag; workers wait on it for work.
    private readonly object _gate = new();
    private readonly Queue<QueuedText> _pending = new();
    private long _pendingTokens;
    private long _sequence;
    private bool _stopping;

    /// <summary>Starts the batcher's worker threads (<see cref="EncoderOptions.ConcurrentBatches"/>) for <paramref name="encoder"/>.</summary>
    public EncodingBatcher(TextEncoder encoder, EncoderOptions options, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        options.Validate();
        Encoder = encoder;
        _options = options;
        _logger = loggerFactory.CreateLogger<EncodingBatcher>();
        _room = new WeightedFifoSemaphore(options.MaxQueuedTexts);
        _workers = new Thread[options.EffectiveConcurrentBatches];
        _runningWorkers = _workers.Length;
        for (var i = 0; i < _workers.Length; i++)
        {
            _workers[i] = new Thread(Run) { IsBackground = true, Name = $"encode {encoder.Model.Name} #{i + 1}" };
            _workers[i].Start();
        }
    }

    /// <summary>The encoder the batches run on.</summary>
    public TextEncoder Encoder { get; }

    /// <summary>Texts admitted and not yet encoded or dropped.</summary>
    public int QueuedTexts => _room.Taken;

    /// <summary>Batches run so far.</summary>
    public long BatchesRun => Interlocked.Read(ref _batches);

    /// <summary>Texts encoded so far.</summary>
    public long TextsEncoded => Interlocked.Read(ref _texts);

    /// <summary>Texts dropped before they started because their caller cancelled or an earlier batch of theirs failed.</summary>
    public long TextsDropped => Interlocked.Read(ref _dropped);

    /// <summary>Test hook: when set, every worker waits on it before each batch.</summary>
    internal ManualResetEventSlim? BatchGate { get; set; }

    /// <summary>Texts queued and not yet taken into the plan (tests wait on it).</summary>
    internal int UnplannedTexts
    {
        get
        {
            lock (_gate)
            {
                return _pending.Count;
            }
        }
    }

    /// <summary>
    /// Encodes <paramref name="texts"/> (exact tokenizer inputs) into <paramref name="output"/>,
    /// <c>texts.Count * Dims</c> floats in input order. Completes when every row is written.
    /// </summary>
    /// <exception cref="EncoderSaturatedException">
    /// (In the task.) The queue had no room for the texts within <see cref="EncoderOptions.MaxQueueWait"/>, or there are
    /// more of them than <see cref="EncoderOptions.MaxQueuedTexts"/>.
    /// </exception>
    /// <exception cref="OperationCanceledException">The caller cancelled: its texts that had not started are dropped and its output is not written afterwards.</exception>
    public Task EncodeAsync(IReadOnlyList<string> texts, Memory<float> output, CancellationToken cancellationToken) =>
        EncodeTimedAsync(texts, output, cancellationToken);

    /// <summary>
    /// As <see cref="EncodeAsync"/>, and says where the call's time went: tokenizing (on the caller's thread),
    /// waiting in the queue, and in the batches that carried its texts.
    /// </summary>
    public Task<EncodingTimings> EncodeTimedAsync(IReadOnlyList<string> texts, Memory<float> output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var dims = Encoder.Dims;
        if (output.Length < texts.Count * dims)
        {
            throw new ArgumentException($"Needs {texts.Count * dims} floats for {texts.Count} texts of {dims} dims; got {output.Length}.", nameof(output));
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<EncodingTimings>(cancellationToken);
        }

        if (texts.Count == 0)
        {
            return Task.FromResult(default(EncodingTimings));
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _stopping), this);
        if (texts.Count > _room.Capacity)
        {
            return Task.FromException<EncodingTimings>(new EncoderSaturatedException(
                $"Model {Encoder.Model.Name} queues at most {_room.Capacity} texts, so a call of {texts.Count} can never be taken; send at most {_room.Capacity} texts per call."));
        }

        var waitStarted = Stopwatch.GetTimestamp();
        var admitted = _room.WaitAsync(texts.Count, _options.MaxQueueWait, cancellationToken);
        return admitted.IsCompletedSuccessfully && admitted.Result
            ? Enqueue(texts, output, waitedForRoom: 0, cancellationToken)
            : EncodeWhenAdmittedAsync(admitted, waitStarted, texts, output, cancellationToken);
    }

    /// <summary>
    /// Stops the workers: texts that have not started fail with <see cref="ObjectDisposedException"/>, batches in
    /// progress finish. The encoder is left open.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.PulseAll(_gate);
        }

        await _stopped.Task.ConfigureAwait(false);
    }

    /// <summary>Waits (up to <see cref="EncoderOptions.MaxQueueWait"/>) in line for room in the queue, then queues the texts.</summary>
    private async Task<EncodingTimings> EncodeWhenAdmittedAsync(
        Task<bool> admitted, long waitStarted, IReadOnlyList<string> texts, Memory<float> output, CancellationToken cancellationToken)
    {
        if (!await admitted.ConfigureAwait(false))
        {
            throw new EncoderSaturatedException(
                $"Model {Encoder.Model.Name} had no room for {texts.Count} more texts for {_options.MaxQueueWait.TotalSeconds:0.###} s " +
                $"({_room.Taken} queued, limit {_room.Capacity}); retry after a pause, or send fewer texts at once.");
        }

        return await Enqueue(texts, output, Stopwatch.GetTimestamp() - waitStarted, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Tokenizes the texts on the caller's thread (overlapping the batch in ONNX Runtime) and queues them; their room is already taken.</summary>
    private Task<EncodingTimings> Enqueue(IReadOnlyList<string> texts, Memory<float> output, long waitedForRoom, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var request = new EncodingRequest(output, texts.Count, Encoder.Dims) { WaitedForRoomTicks = waitedForRoom };
        var items = new QueuedText[texts.Count];
        var made = 0;
        long tokens = 0;
        try
        {
            for (; made < items.Length; made++)
            {
                items[made] = new QueuedText(request, made, Encoder.Tokenize(texts[made]));
                tokens += items[made].Length;
            }
        }
        catch
        {
            _room.Release(texts.Count);
            throw;
        }

        var enqueuedAt = Stopwatch.GetTimestamp();
        request.TokenizeTicks = enqueuedAt - started;
        request.EnqueuedAt = enqueuedAt;
        lock (_gate)
        {
            if (_stopping)
            {
                _room.Release(texts.Count);
                return Task.FromException<EncodingTimings>(new ObjectDisposedException(GetType().FullName));
            }

            foreach (var item in items)
            {
                item.Sequence = _sequence++;
                _pending.Enqueue(item);
            }

            _pendingTokens += tokens;
            Monitor.Pulse(_gate);
        }

        request.WatchCancellation(cancellationToken);
        return request.Task;
    }
}
