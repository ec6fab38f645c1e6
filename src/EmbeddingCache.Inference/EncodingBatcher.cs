using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Inference;

/// <summary>
/// One per loaded model: gathers the texts of all concurrent callers, sorts them by token count so that batches
/// carry little padding, cuts them into batches by <see cref="EncoderOptions.TokenBudget"/>, runs them on the
/// encoder and hands each caller its rows in input order.
/// </summary>
/// <remarks>
/// Callers tokenize their own texts on their own threads before queueing them, so tokenization overlaps the batches
/// ONNX Runtime is running. <see cref="EncoderOptions.ConcurrentBatches"/> workers share one plan: before each batch a
/// worker brings texts that arrived into it (up to a window's worth, in arrival order), sorts and cuts it again, and
/// runs the largest batch of the caller with the oldest text, so no caller is passed over forever by later ones. The batcher
/// does not own the encoder.
/// </remarks>
public sealed class EncodingBatcher : IAsyncDisposable
{
    // How many batches' worth of queued texts are planned together: more sorts better, fewer keeps latency fair.
    private const int WindowBatches = 16;

    private readonly EncoderOptions _options;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private readonly Queue<WorkItem> _pending = new();
    private readonly LinkedList<RoomWaiter> _waitingForRoom = new();
    private readonly Thread[] _workers;
    private readonly Lock _planGate = new();
    private readonly List<List<WorkItem>> _planned = [];
    private int _runningWorkers;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _queuedTexts;
    private long _pendingTokens;
    private bool _stopping;
    private long _batches;
    private long _texts;
    private long _dropped;
    private long _sequence;

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
    public int QueuedTexts => Volatile.Read(ref _queuedTexts);

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

    /// <summary>Batches planned and not yet taken by a worker (tests wait on it).</summary>
    internal int PlannedBatches
    {
        get
        {
            lock (_planGate)
            {
                return _planned.Count;
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

        RoomWaiter? waiter = null;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            if (texts.Count > _options.MaxQueuedTexts)
            {
                return Task.FromException<EncodingTimings>(new EncoderSaturatedException(
                    $"Model {Encoder.Model.Name} queues at most {_options.MaxQueuedTexts} texts, so a call of {texts.Count} can never be taken; send at most {_options.MaxQueuedTexts} texts per call."));
            }

            // Callers already waiting go first: one arriving later must not take the room they wait for.
            if (_waitingForRoom.Count == 0 && _queuedTexts + texts.Count <= _options.MaxQueuedTexts)
            {
                _queuedTexts += texts.Count;
            }
            else
            {
                waiter = new RoomWaiter(texts.Count);
                _waitingForRoom.AddLast(waiter.Node);
            }
        }

        return waiter is null ? Enqueue(texts, output, waitedForRoom: 0, cancellationToken) : EncodeWhenRoomAsync(waiter, texts, output, cancellationToken);
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

    /// <summary>Waits up to <see cref="EncoderOptions.MaxQueueWait"/> for room in the queue, then queues the texts.</summary>
    private async Task<EncodingTimings> EncodeWhenRoomAsync(RoomWaiter waiter, IReadOnlyList<string> texts, Memory<float> output, CancellationToken cancellationToken)
    {
        var waitStarted = Stopwatch.GetTimestamp();
        try
        {
            await waiter.Admitted.WaitAsync(_options.MaxQueueWait, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            bool admitted;
            int queued;
            lock (_gate)
            {
                admitted = waiter.Admitted.IsCompletedSuccessfully;
                if (waiter.Node.List is not null)
                {
                    // Leaving may let smaller callers behind this one in.
                    _waitingForRoom.Remove(waiter.Node);
                    AdmitWaiters();
                }

                queued = _queuedTexts;
            }

            if (e is OperationCanceledException)
            {
                if (admitted)
                {
                    ReleaseRoom(texts.Count);
                }

                throw;
            }

            if (!admitted)
            {
                throw new EncoderSaturatedException(
                    $"Model {Encoder.Model.Name} had no room for {texts.Count} more texts for {_options.MaxQueueWait.TotalSeconds:0.###} s " +
                    $"({queued} queued, limit {_options.MaxQueuedTexts}); retry after a pause, or send fewer texts at once.");
            }

            // Room came just as the wait ran out: use it.
        }

        return await Enqueue(texts, output, Stopwatch.GetTimestamp() - waitStarted, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Tokenizes the texts on the caller's thread (overlapping the batch in ONNX Runtime) and queues them; their room is already taken.</summary>
    private Task<EncodingTimings> Enqueue(IReadOnlyList<string> texts, Memory<float> output, long waitedForRoom, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var request = new Request(output, texts.Count, Encoder.Dims) { WaitedForRoomTicks = waitedForRoom };
        var items = new WorkItem[texts.Count];
        var made = 0;
        long tokens = 0;
        try
        {
            for (; made < items.Length; made++)
            {
                items[made] = new WorkItem(request, made, Encoder.Tokenize(texts[made]));
                tokens += items[made].Length;
            }
        }
        catch
        {
            ReleaseRoom(texts.Count);
            throw;
        }

        var enqueuedAt = Stopwatch.GetTimestamp();
        request.TokenizeTicks = enqueuedAt - started;
        request.EnqueuedAt = enqueuedAt;
        lock (_gate)
        {
            if (_stopping)
            {
                _queuedTexts -= texts.Count;
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

    /// <summary>
    /// One worker: takes the next batch of the shared plan (refilled and cut again under the plan's gate) and runs it
    /// outside the gate, so that the other workers plan and run theirs meanwhile.
    /// </summary>
    private void Run()
    {
        var dims = Encoder.Dims;
        var tokens = new TokenizedText[_options.MaxBatchSize];
        var members = new WorkItem[_options.MaxBatchSize];
        var rows = new float[_options.MaxBatchSize * dims];
        try
        {
            while (TakeNextBatch() is { } batch)
            {
                BatchGate?.Wait();
                if (Volatile.Read(ref _stopping))
                {
                    FailStopped(batch);
                    break;
                }

                try
                {
                    var size = 0;
                    foreach (var item in batch)
                    {
                        if (item.Request.IsDone)
                        {
                            // Its caller cancelled (or an earlier batch of it failed) before it started.
                            Finish(item, dropped: true);
                        }
                        else
                        {
                            members[size] = item;
                            tokens[size++] = item.Tokens;
                        }
                    }

                    if (size > 0)
                    {
                        RunBatch(members.AsSpan(0, size), tokens.AsSpan(0, size), rows.AsSpan(0, size * dims));
                    }
                }
                catch (Exception e)
                {
                    // A fault outside ONNX Runtime (a bug): fail this batch's callers rather than the process.
                    InferenceLog.BatchFailed(_logger, e, Encoder.Model.Name, batch.Count);
                    foreach (var item in batch)
                    {
                        if (!item.Finished)
                        {
                            item.Request.Fail(e);
                            Finish(item, dropped: true);
                        }
                    }
                }
                finally
                {
                    Array.Clear(members);
                    Array.Clear(tokens);
                }
            }
        }
        finally
        {
            WorkerStopped();
        }
    }

    /// <summary>The next batch to run, waiting for work if there is none; null once the batcher stops.</summary>
    private List<WorkItem>? TakeNextBatch()
    {
        lock (_planGate)
        {
            while (Refill(_planned))
            {
                // An empty plan: every text taken in belonged to callers that cancelled while queued.
                if (_planned.Count > 0)
                {
                    return TakeLargestBatchOfOldestCaller(_planned);
                }
            }

            return null;
        }
    }

    /// <summary>The last worker to stop fails what is still planned or queued.</summary>
    private void WorkerStopped()
    {
        if (Interlocked.Decrement(ref _runningWorkers) > 0)
        {
            return;
        }

        lock (_planGate)
        {
            foreach (var batch in _planned)
            {
                FailStopped(batch);
            }

            _planned.Clear();
        }

        FailAbandoned();
        InferenceLog.BatcherStopped(_logger, Encoder.Model.Name, BatchesRun, TextsEncoded);
        _stopped.TrySetResult();
    }

    /// <summary>
    /// Brings queued texts into the plan, in arrival order, up to a window's worth. With nothing planned it first waits
    /// for work, and up to MaxBatchDelay for a full batch; while busy it takes what arrived during the last batch, so
    /// texts of callers who answered late still share batches with the rest (continuous batching). Texts that arrived
    /// are sorted by length with those already planned and the whole plan is cut again; with no arrivals the plan stands.
    /// </summary>
    private bool Refill(List<List<WorkItem>> planned)
    {
        var pool = new List<WorkItem>();
        foreach (var batch in planned)
        {
            pool.AddRange(batch);
        }

        var planSize = pool.Count;
        lock (_gate)
        {
            if (planSize == 0)
            {
                while (_pending.Count == 0 && !_stopping)
                {
                    Monitor.Wait(_gate);
                }

                if (_stopping)
                {
                    return false;
                }

                var deadline = _pending.Peek().Request.EnqueuedAt + (long)(_options.MaxBatchDelay.TotalSeconds * Stopwatch.Frequency);
                while (!_stopping && _pending.Count < _options.MaxBatchSize && _pendingTokens < _options.TokenBudget)
                {
                    var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline);
                    if (wait <= TimeSpan.Zero)
                    {
                        break;
                    }

                    Monitor.Wait(_gate, (int)Math.Ceiling(wait.TotalMilliseconds));
                }
            }

            if (_stopping)
            {
                return false;
            }

            var maxTexts = WindowBatches * _options.MaxBatchSize;
            var maxTokens = (long)WindowBatches * _options.TokenBudget;
            long tokens = 0;
            foreach (var item in pool)
            {
                tokens += item.Length;
            }

            long taken = 0;
            while (_pending.Count > 0 && pool.Count < maxTexts && (pool.Count == 0 || tokens + _pending.Peek().Length <= maxTokens))
            {
                var item = _pending.Dequeue();
                tokens += item.Length;
                taken += item.Length;
                pool.Add(item);
            }

            _pendingTokens -= taken;
        }

        if (pool.Count == planSize)
        {
            return true;
        }

        // Texts of callers that cancelled while queued go now, so they do not take room in the new plan.
        pool.RemoveAll(item =>
        {
            if (!item.Request.IsDone)
            {
                return false;
            }

            Finish(item, dropped: true);
            return true;
        });
        pool.Sort(static (a, b) => a.Length != b.Length ? a.Length.CompareTo(b.Length) : a.Sequence.CompareTo(b.Sequence));
        planned.Clear();
        var lengths = pool.Select(item => item.Length).ToArray();
        // Cut for padding alone, a plan can leave one long batch running while the other workers idle: with several
        // workers no batch gets more than a worker's share of the plan's tokens, unless the plan is too small to be
        // worth a second run (by the planner's own cost of a run).
        var share = (lengths.Sum(length => (long)length) + _workers.Length - 1) / _workers.Length;
        var budget = (int)Math.Min(_options.TokenBudget, Math.Max(share, 2 * BatchPlanner.BatchOverheadTokens));
        for (var start = 0; start < pool.Count;)
        {
            var size = BatchPlanner.NextBatchSize(lengths.AsSpan(start), budget, _options.MaxBatchSize);
            planned.Add(pool.GetRange(start, size));
            start += size;
        }

        return true;
    }

    /// <summary>
    /// Takes, of the planned batches that carry texts of the caller with the oldest text, the one with the most padded
    /// tokens. The oldest callers are answered first, so however many texts keep arriving every caller comes first in
    /// turn; and the big batches of a call start first, so with several workers a call ends on small batches rather
    /// than on a long one running alone while the other workers idle.
    /// </summary>
    private static List<WorkItem> TakeLargestBatchOfOldestCaller(List<List<WorkItem>> planned)
    {
        Request? oldestCaller = null;
        var oldest = long.MaxValue;
        foreach (var batch in planned)
        {
            foreach (var item in batch)
            {
                if (item.Sequence < oldest)
                {
                    oldest = item.Sequence;
                    oldestCaller = item.Request;
                }
            }
        }

        var chosen = 0;
        long largest = -1;
        for (var b = 0; b < planned.Count; b++)
        {
            // A batch is sorted by length: its last text sets the padded width.
            var padded = (long)planned[b].Count * planned[b][^1].Length;
            if (padded > largest && planned[b].Exists(item => ReferenceEquals(item.Request, oldestCaller)))
            {
                largest = padded;
                chosen = b;
            }
        }

        var taken = planned[chosen];
        planned.RemoveAt(chosen);
        return taken;
    }

    private void FailStopped(List<WorkItem> batch)
    {
        var error = new ObjectDisposedException(GetType().FullName, "The batcher was stopped before these texts were encoded.");
        foreach (var item in batch)
        {
            if (!item.Finished)
            {
                item.Request.Fail(error);
                Finish(item, dropped: true);
            }
        }
    }

    private void RunBatch(ReadOnlySpan<WorkItem> members, ReadOnlySpan<TokenizedText> batch, Span<float> rows)
    {
        var dims = Encoder.Dims;
        var started = Stopwatch.GetTimestamp();
        foreach (var item in members)
        {
            item.Request.BatchStarted(started);
        }

        try
        {
            Encoder.EncodeBatch(batch, rows);
        }
        catch (Exception e)
        {
            InferenceLog.BatchFailed(_logger, e, Encoder.Model.Name, members.Length);
            foreach (var item in members)
            {
                item.Request.Fail(e);
                Finish(item, dropped: true);
            }

            return;
        }

        Interlocked.Increment(ref _batches);
        var elapsed = Stopwatch.GetTimestamp() - started;
        Measure(batch, Stopwatch.GetElapsedTime(0, elapsed));
        for (var i = 0; i < members.Length; i++)
        {
            if (IsFirstOfItsRequest(members, i))
            {
                members[i].Request.BatchFinished(elapsed);
            }
        }

        for (var i = 0; i < members.Length; i++)
        {
            // Counted and its room released before the row is delivered: a caller whose call completes sees its own
            // texts in TextsEncoded and out of QueuedTexts.
            Finish(members[i], dropped: false);
            members[i].Request.Deliver(members[i].Index, rows.Slice(i * dims, dims));
        }
    }

    /// <summary>A batch may carry several texts of one request: its time counts once for that request.</summary>
    private static bool IsFirstOfItsRequest(ReadOnlySpan<WorkItem> members, int index)
    {
        for (var i = 0; i < index; i++)
        {
            if (ReferenceEquals(members[i].Request, members[index].Request))
            {
                return false;
            }
        }

        return true;
    }

    private void Measure(ReadOnlySpan<TokenizedText> batch, TimeSpan elapsed)
    {
        var width = 0;
        var tokens = 0;
        foreach (var text in batch)
        {
            width = Math.Max(width, text.Length);
            tokens += text.Length;
        }

        var model = new KeyValuePair<string, object?>("model", Encoder.Model.Name);
        var positions = batch.Length * width;
        EncoderMeter.BatchTexts.Record(batch.Length, model);
        EncoderMeter.BatchTokens.Record(positions, model);
        EncoderMeter.BatchPadding.Record(1 - ((double)tokens / positions), model);
        EncoderMeter.BatchDuration.Record(elapsed.TotalSeconds, model);
    }

    private void Finish(WorkItem item, bool dropped)
    {
        item.Finished = true;
        Interlocked.Increment(ref dropped ? ref _dropped : ref _texts);
        ReleaseRoom(1);
    }

    private void ReleaseRoom(int texts)
    {
        lock (_gate)
        {
            _queuedTexts -= texts;
            AdmitWaiters();
        }
    }

    /// <summary>Lets waiting callers in, first come first served, while they fit. Called under the gate.</summary>
    private void AdmitWaiters()
    {
        while (_waitingForRoom.First is { } head && _queuedTexts + head.Value.Texts <= _options.MaxQueuedTexts)
        {
            _waitingForRoom.RemoveFirst();
            _queuedTexts += head.Value.Texts;
            head.Value.Admit();
        }
    }

    private void FailAbandoned()
    {
        List<WorkItem> abandoned;
        List<RoomWaiter> waiting;
        lock (_gate)
        {
            _stopping = true;
            abandoned = [.. _pending];
            _pending.Clear();
            _pendingTokens = 0;
            waiting = [.. _waitingForRoom];
            _waitingForRoom.Clear();
        }

        var error = new ObjectDisposedException(GetType().FullName, "The batcher was stopped before these texts were encoded.");
        foreach (var waiter in waiting)
        {
            waiter.Fail(error);
        }

        foreach (var item in abandoned)
        {
            item.Request.Fail(error);
            Finish(item, dropped: true);
        }
    }

    /// <summary>A caller waiting for room in a full queue for its texts.</summary>
    private sealed class RoomWaiter
    {
        private readonly TaskCompletionSource _admitted = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public RoomWaiter(int texts)
        {
            Texts = texts;
            Node = new LinkedListNode<RoomWaiter>(this);
        }

        public int Texts { get; }

        /// <summary>Its place in the waiting line; out of the line (List is null) once admitted or failed.</summary>
        public LinkedListNode<RoomWaiter> Node { get; }

        public Task Admitted => _admitted.Task;

        public void Admit() => _admitted.TrySetResult();

        public void Fail(Exception error) => _admitted.TrySetException(error);
    }

    /// <summary>One text of a request, with its tokens, waiting for a batch.</summary>
    private sealed class WorkItem(Request request, int index, TokenizedText tokens)
    {
        public TokenizedText Tokens { get; } = tokens;

        public Request Request { get; } = request;

        public int Index { get; } = index;

        public int Length { get; } = tokens.Length;

        /// <summary>Arrival order across all callers.</summary>
        public long Sequence { get; set; }

        public bool Finished { get; set; }
    }

    /// <summary>
    /// One caller's call: its output and how many rows are missing. Rows are written under the request's lock and
    /// only while it is not done, so nothing touches the caller's memory after its task completed.
    /// </summary>
    private sealed class Request(Memory<float> output, int count, int dims)
    {
        private readonly TaskCompletionSource<EncodingTimings> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Lock _lock = new();
        private int _missing = count;
        private bool _done;
        private CancellationTokenRegistration _registration;

        public Task<EncodingTimings> Task => _completion.Task;

        public long EnqueuedAt { get; set; }

        public long TokenizeTicks { get; set; }

        public long WaitedForRoomTicks { get; init; }

        // Batches of one request may run at once on different workers: these change under the request's lock.
        private long _firstBatchAt;
        private long _batchTicks;
        private int _batches;

        public void BatchStarted(long timestamp)
        {
            lock (_lock)
            {
                if (_firstBatchAt == 0)
                {
                    _firstBatchAt = timestamp;
                }
            }
        }

        public void BatchFinished(long elapsedTicks)
        {
            lock (_lock)
            {
                _batchTicks += elapsedTicks;
                _batches++;
            }
        }

        public bool IsDone
        {
            get
            {
                lock (_lock)
                {
                    return _done;
                }
            }
        }

        public void WatchCancellation(CancellationToken cancellationToken)
        {
            if (!cancellationToken.CanBeCanceled)
            {
                return;
            }

            var registration = cancellationToken.Register(static (state, token) => ((Request)state!).Cancel(token), this);
            lock (_lock)
            {
                if (_done)
                {
                    registration.Unregister();
                }
                else
                {
                    _registration = registration;
                }
            }
        }

        public void Deliver(int index, ReadOnlySpan<float> row)
        {
            lock (_lock)
            {
                if (_done)
                {
                    return;
                }

                row.CopyTo(output.Span.Slice(index * dims, dims));
                if (--_missing > 0)
                {
                    return;
                }

                _done = true;
                _registration.Unregister();
            }

            _completion.TrySetResult(new EncodingTimings(
                Stopwatch.GetElapsedTime(0, TokenizeTicks),
                Stopwatch.GetElapsedTime(EnqueuedAt, _firstBatchAt) + Stopwatch.GetElapsedTime(0, WaitedForRoomTicks),
                Stopwatch.GetElapsedTime(0, _batchTicks),
                _batches));
        }

        public void Fail(Exception error)
        {
            lock (_lock)
            {
                if (_done)
                {
                    return;
                }

                _done = true;
                _registration.Unregister();
            }

            _completion.TrySetException(error);
        }

        private void Cancel(CancellationToken token)
        {
            lock (_lock)
            {
                if (_done)
                {
                    return;
                }

                _done = true;
            }

            _completion.TrySetCanceled(token);
        }
    }
}
