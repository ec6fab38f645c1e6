namespace EmbeddingCache.Storage;

/// <summary>
/// What readers of one kind see: a generation's layout, segments and index. Replaced whole on invalidation and
/// dispose (see <see cref="GenerationGuard"/>); the replaced one is retired once the reads inside it have left,
/// and only then are its files and mappings released.
/// </summary>
internal sealed class StoreGeneration(long number, NpyLayout layout, RowAddressing addressing, Segment[] segments, KeyIndex keys, KeyIndex ids, bool disposed)
{
    private Segment[] _segments = segments;
    private readonly List<IDisposable> _superseded = [];
    private int _readers;
    private int _retired;

    /// <summary>Changes on every invalidation; appends computed for another generation write nothing.</summary>
    public long Number { get; } = number;

    public NpyLayout Layout { get; } = layout;

    /// <summary>How the locations in <see cref="Keys"/> and <see cref="Ids"/> name a segment slot and row.</summary>
    public RowAddressing Addressing { get; } = addressing;

    /// <summary>Replaced (copy on write) by the writer when a segment starts or is sealed.</summary>
    public Segment[] Segments
    {
        get => Volatile.Read(ref _segments);
        set => Volatile.Write(ref _segments, value);
    }

    public KeyIndex Keys { get; } = keys;

    public KeyIndex Ids { get; } = ids;

    /// <summary>True for the generation a shut-down store leaves behind: it holds nothing and refuses reads and writes.</summary>
    public bool Disposed { get; } = disposed;

    /// <summary>Committed rows, including rows superseded by newer writes of the same key or id.</summary>
    public long RowCount
    {
        get
        {
            long rows = 0;
            foreach (var segment in Segments)
            {
                rows += segment.Rows;
            }

            return rows;
        }
    }

    /// <summary>Bytes of committed data on disk: headers, committed rows and sidecar records (not the sparse reserve of the growing segment).</summary>
    public long ByteCount
    {
        get
        {
            long bytes = 0;
            foreach (var segment in Segments)
            {
                bytes += segment.ByteCount;
            }

            return bytes;
        }
    }

    /// <summary>Bytes of committed rows, headers included: what page warming reads.</summary>
    public long WarmableBytes => Segments.Sum(segment => segment.Layout.FileLength(segment.Rows));

    /// <summary>An empty generation: after an invalidation, or (<paramref name="disposed"/>) after shutdown.</summary>
    public static StoreGeneration Empty(long number, NpyLayout layout, RowAddressing addressing, bool disposed) =>
        new(number, layout, addressing, [], new KeyIndex(), new KeyIndex(), disposed);

    /// <summary>Counts a read in, unless the generation is retired; a successful call is paired with <see cref="Exit"/>.</summary>
    public bool TryEnter()
    {
        Interlocked.Increment(ref _readers);
        if (Volatile.Read(ref _retired) == 0)
        {
            return true;
        }

        Interlocked.Decrement(ref _readers);
        return false;
    }

    public void Exit() => Interlocked.Decrement(ref _readers);

    /// <summary>
    /// Marks the generation retired (it must no longer be current) and waits until no read is inside. The full
    /// fences of Exchange and Increment make sure a read either is counted here or sees the mark.
    /// </summary>
    public void Retire()
    {
        Interlocked.Exchange(ref _retired, 1);
        var wait = default(SpinWait);
        while (Volatile.Read(ref _readers) != 0)
        {
            wait.SpinOnce();
        }
    }

    /// <summary>
    /// Keeps a segment that a follower replaced in <see cref="Segments"/> (its file was replaced or grew past its mapping)
    /// until the generation is released: a read that took it from the old array may still be copying from it.
    /// </summary>
    public void Supersede(IDisposable segment)
    {
        lock (_superseded)
        {
            _superseded.Add(segment);
        }
    }

    /// <summary>Closes the segments' files and unmaps them; only after <see cref="Retire"/>.</summary>
    public void Release()
    {
        foreach (var segment in Segments)
        {
            if (segment is IDisposable owned)
            {
                owned.Dispose();
            }
            else
            {
                segment.Mapping.Dispose();
            }
        }

        lock (_superseded)
        {
            foreach (var segment in _superseded)
            {
                segment.Dispose();
            }

            _superseded.Clear();
        }
    }
}
