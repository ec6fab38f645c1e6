using System.Collections.Concurrent;

namespace EmbeddingCache.Engine;

/// <summary>
/// Computations in flight by key, so that a key several requests ask for at once is computed once: the first to
/// join a key owns its flight and completes it, the others wait on its task.
/// </summary>
internal sealed class SingleFlight<TKey, TValue>
    where TKey : notnull
{
    private readonly ConcurrentDictionary<TKey, Task<TValue>> flights = new();

    /// <summary>
    /// The task of the flight of <paramref name="key"/>. When none is in flight (or only a cancelled one whose owner
    /// has not landed it yet) that is <paramref name="promise"/>'s task: the caller then owns the flight, completes
    /// the promise and calls <see cref="Land"/>.
    /// </summary>
    public Task<TValue> Join(TKey key, TaskCompletionSource<TValue> promise)
    {
        var flight = flights.GetOrAdd(key, promise.Task);
        // A cancelled flight is taken over rather than waited on: its owner gave up, this caller has not.
        while (flight != promise.Task && flight.IsCanceled)
        {
            flight = flights.TryUpdate(key, promise.Task, flight) ? promise.Task : flights.GetOrAdd(key, promise.Task);
        }
        return flight;
    }

    /// <summary>Ends an owner's flight, so that a later join starts a new one; a flight that took its place stays.</summary>
    public void Land(TKey key, Task<TValue> flight) => flights.TryRemove(new(key, flight));
}
