using System.Diagnostics;

namespace EmbeddingCache.Inference;

/// <summary>
/// The workers' side of the batcher: <see cref="EncoderOptions.ConcurrentBatches"/> threads share one plan. Before
/// each batch a worker brings texts that arrived into it (up to a window's worth, in arrival order), plans it again
/// with the <see cref="BatchPlanner"/>, and runs the largest batch of the caller with the oldest text, so no caller is
/// passed over forever by later ones.
/// </summary>
public sealed partial class EncodingBatcher
{
    // How many batches' worth of queued texts are planned together: more sorts better, fewer keeps latency fair.
    private const int WindowBatches = 16;

    private readonly Thread[] _workers;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Guards the plan: batches cut and not yet taken by a worker. Taken before _gate, never inside it.
    private readonly Lock _planGate = new();
    private readonly List<List<QueuedText>> _planned = [];
    private int _runningWorkers;
    private long _batches;
    private long _texts;
    private long _dropped;

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
    /// One worker: takes the next batch of the shared plan (refilled and cut again under the plan's gate) and runs it
    /// outside the gate, so that the other workers plan and run theirs meanwhile.
    /// </summary>
    private void Run()
    {
        var dims = Encoder.Dims;
        var tokens = new TokenizedText[_options.MaxBatchSize];
        var members = new QueuedText[_options.MaxBatchSize];
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
    private List<QueuedText>? TakeNextBatch()
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
    private bool Refill(List<List<QueuedText>> planned)
    {
        var pool = new List<QueuedText>();
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
        // The planner keeps equal lengths in the order given: arrival order, so older texts are planned first.
        pool.Sort(static (a, b) => a.Sequence.CompareTo(b.Sequence));
        var lengths = pool.Select(item => item.Length).ToArray();
        var budget = BatchPlanner.SharedTokenBudget(lengths, _workers.Length, _options.TokenBudget);
        planned.Clear();
        foreach (var batch in BatchPlanner.Plan(lengths, budget, _options.MaxBatchSize))
        {
            planned.Add([.. batch.Select(index => pool[index])]);
        }

        return true;
    }

    /// <summary>
    /// Takes, of the planned batches that carry texts of the caller with the oldest text, the one with the most padded
    /// tokens. The oldest callers are answered first, so however many texts keep arriving every caller comes first in
    /// turn; and the big batches of a call start first, so with several workers a call ends on small batches rather
    /// than on a long one running alone while the other workers idle.
    /// </summary>
    private static List<QueuedText> TakeLargestBatchOfOldestCaller(List<List<QueuedText>> planned)
    {
        EncodingRequest? oldestCaller = null;
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

    private void FailStopped(List<QueuedText> batch)
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

    private void RunBatch(ReadOnlySpan<QueuedText> members, ReadOnlySpan<TokenizedText> batch, Span<float> rows)
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
    private static bool IsFirstOfItsRequest(ReadOnlySpan<QueuedText> members, int index)
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

    private void Finish(QueuedText item, bool dropped)
    {
        item.Finished = true;
        Interlocked.Increment(ref dropped ? ref _dropped : ref _texts);
        _room.Release(1);
    }

    private void FailAbandoned()
    {
        List<QueuedText> abandoned;
        lock (_gate)
        {
            _stopping = true;
            abandoned = [.. _pending];
            _pending.Clear();
            _pendingTokens = 0;
        }

        var error = new ObjectDisposedException(GetType().FullName, "The batcher was stopped before these texts were encoded.");
        _room.Close(error);
        foreach (var item in abandoned)
        {
            item.Request.Fail(error);
            Finish(item, dropped: true);
        }
    }
}
