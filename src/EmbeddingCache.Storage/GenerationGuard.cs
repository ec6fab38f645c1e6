namespace EmbeddingCache.Storage;

/// <summary>
/// Holds the current <see cref="StoreGeneration"/> of one kind. Reads enter it without a lock; replacing it
/// waits for the reads inside the old one to leave before unmapping that one, so no read ever touches an
/// unmapped segment and none ever waits.
/// </summary>
internal sealed class GenerationGuard(StoreGeneration first)
{
    private StoreGeneration _current = first;

    /// <summary>The generation new reads and writes use; to read its rows, <see cref="Enter"/> it instead.</summary>
    public StoreGeneration Current => Volatile.Read(ref _current);

    /// <summary>Enters the current generation; a read that raced with its retirement retries on the next one.</summary>
    /// <returns>The generation entered: pair with <see cref="StoreGeneration.Exit"/>.</returns>
    public StoreGeneration Enter()
    {
        while (true)
        {
            var generation = Volatile.Read(ref _current);
            if (generation.TryEnter())
            {
                return generation;
            }
        }
    }

    /// <summary>
    /// Publishes <paramref name="next"/>, waits for the reads that entered the old generation, then releases the
    /// old one's files and mappings. Called by the holder of the kind's write gate only (on a follower, by its poller).
    /// </summary>
    public void Replace(StoreGeneration next)
    {
        var old = _current;
        Volatile.Write(ref _current, next);
        old.Retire();
        old.Release();
    }
}
