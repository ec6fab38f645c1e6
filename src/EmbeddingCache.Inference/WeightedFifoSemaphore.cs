namespace EmbeddingCache.Inference;

/// <summary>
/// Admission to a bounded room: each caller takes a weight (its texts) out of <see cref="Capacity"/>, first come
/// first served. A caller that does not fit waits in line, and no caller arriving later takes the room it waits for,
/// however small; so a large call is not starved by a stream of small ones.
/// </summary>
internal sealed class WeightedFifoSemaphore(int capacity)
{
    private readonly Lock _lock = new();
    private readonly LinkedList<Waiter> _line = new();
    private int _taken;
    private bool _closed;

    /// <summary>The most weight the room holds.</summary>
    public int Capacity { get; } = capacity > 0 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "Must be positive.");

    /// <summary>Weight taken and not yet released.</summary>
    public int Taken => Volatile.Read(ref _taken);

    /// <summary>
    /// Takes <paramref name="weight"/>: at once (the task is already complete, true) when it fits and nobody waits;
    /// otherwise in turn, waiting up to <paramref name="timeout"/> (false when the wait ran out without room).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The weight is not positive or larger than <see cref="Capacity"/>: it could never be taken.</exception>
    /// <exception cref="ObjectDisposedException">The semaphore was closed (thrown at once, or from the task of a caller still in line).</exception>
    /// <exception cref="OperationCanceledException">(In the task.) The caller cancelled: it holds nothing.</exception>
    public Task<bool> WaitAsync(int weight, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(weight);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(weight, Capacity);
        Waiter waiter;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            if (_line.Count == 0 && _taken + weight <= Capacity)
            {
                _taken += weight;
                return Task.FromResult(true);
            }

            waiter = new Waiter(weight);
            _line.AddLast(waiter.Node);
        }

        return WaitInLineAsync(waiter, timeout, cancellationToken);
    }

    /// <summary>Gives back weight taken earlier, letting waiting callers in, in turn, while they fit.</summary>
    public void Release(int weight)
    {
        lock (_lock)
        {
            _taken -= weight;
            AdmitWaiters();
        }
    }

    /// <summary>Refuses every later <see cref="WaitAsync"/> and fails the callers in line with <paramref name="error"/>.</summary>
    public void Close(Exception error)
    {
        List<Waiter> waiting;
        lock (_lock)
        {
            _closed = true;
            waiting = [.. _line];
            _line.Clear();
        }

        foreach (var waiter in waiting)
        {
            waiter.Fail(error);
        }
    }

    private async Task<bool> WaitInLineAsync(Waiter waiter, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await waiter.Admitted.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            bool admitted;
            lock (_lock)
            {
                admitted = waiter.Admitted.IsCompletedSuccessfully;
                if (waiter.Node.List is not null)
                {
                    // Leaving may let smaller callers behind this one in.
                    _line.Remove(waiter.Node);
                    AdmitWaiters();
                }
            }

            if (e is OperationCanceledException)
            {
                if (admitted)
                {
                    Release(waiter.Weight);
                }

                throw;
            }

            // Room may have come just as the wait ran out: then it is taken.
            return admitted;
        }
    }

    /// <summary>Lets waiting callers in, first come first served, while they fit. Called under the lock.</summary>
    private void AdmitWaiters()
    {
        while (_line.First is { } head && _taken + head.Value.Weight <= Capacity)
        {
            _line.RemoveFirst();
            _taken += head.Value.Weight;
            head.Value.Admit();
        }
    }

    /// <summary>A caller waiting in line for room for its weight.</summary>
    private sealed class Waiter
    {
        private readonly TaskCompletionSource _admitted = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Waiter(int weight)
        {
            Weight = weight;
            Node = new LinkedListNode<Waiter>(this);
        }

        public int Weight { get; }

        /// <summary>Its place in the line; out of the line (List is null) once admitted or failed.</summary>
        public LinkedListNode<Waiter> Node { get; }

        public Task Admitted => _admitted.Task;

        public void Admit() => _admitted.TrySetResult();

        public void Fail(Exception error) => _admitted.TrySetException(error);
    }
}
