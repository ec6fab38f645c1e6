using System.Diagnostics;

namespace EmbeddingCache.Inference;

/// <summary>
/// One caller's call: its output and how many rows are missing. Rows are written under the request's lock and
/// only while it is not done, so nothing touches the caller's memory after its task completed.
/// </summary>
internal sealed class EncodingRequest(Memory<float> output, int count, int dims)
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

        var registration = cancellationToken.Register(static (state, token) => ((EncodingRequest)state!).Cancel(token), this);
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
