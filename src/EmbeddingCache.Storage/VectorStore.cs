using System.Buffers;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Storage;

/// <summary>
/// The vectors of one kind of one model: memory-mapped segments, an in-memory index from content keys
/// and ids to rows, and a single writer that group-commits appends.
/// </summary>
/// <remarks>
/// Reads (<see cref="Gather"/>, <see cref="RowGather"/>) take no lock: they enter the current generation
/// (<see cref="GenerationGuard"/>) and copy rows straight from its mappings. A segment is unmapped only when a whole
/// generation is retired (invalidation, dispose), after the readers that entered it have left. Appends go through
/// one <see cref="GroupCommitWriter"/>. This class opens, resets and shuts the kind down and counts what it holds.
/// A follower's store (<see cref="Follow"/>) has no writer: its <see cref="KindFollower"/> brings the same read
/// structures up to what the writer publishes, and appends and resets are refused.
/// </remarks>
public sealed class VectorStore
{
    private readonly string _model;
    private readonly string _modelDirectory;
    private readonly string _directory;
    private readonly string _kindName;
    private readonly StorageOptions _options;
    private readonly ILogger _logger;
    private readonly GenerationGuard _generations;
    private readonly GroupCommitWriter? _writer;
    private readonly KindFollower? _follower;
    private readonly Trash? _trash;

    private VectorStore(
        string model, VectorKind kind, string modelDirectory, NpyLayout layout, StorageOptions options, ILogger logger, Trash trash,
        RecoveredKind recovered, long generation, Action checkpointed)
    {
        _model = model;
        Kind = kind;
        _modelDirectory = modelDirectory;
        _kindName = kind.Name();
        _directory = recovered.Directory;
        _options = options;
        _logger = logger;
        _trash = trash;
        _generations = new GenerationGuard(new StoreGeneration(generation, layout, recovered.Addressing, [.. recovered.Segments], recovered.Keys, recovered.Ids, disposed: false));
        _writer = new GroupCommitWriter(_generations, model, kind, _directory, recovered.Appendable, recovered.NextNumber, options, logger, checkpointed);
    }

    private VectorStore(string model, VectorKind kind, string modelDirectory, StorageOptions options, ILogger logger, KindFollower follower)
    {
        _model = model;
        Kind = kind;
        _modelDirectory = modelDirectory;
        _kindName = kind.Name();
        _directory = Path.Combine(modelDirectory, _kindName);
        _options = options;
        _logger = logger;
        _follower = follower;
        _generations = follower.Generations;
    }

    /// <summary>Query or document.</summary>
    public VectorKind Kind { get; }

    /// <summary>Vector width of every row.</summary>
    public int Dims => _generations.Current.Layout.Dims;

    /// <summary>Storage element type.</summary>
    public VectorDType DType => _generations.Current.Layout.DType;

    /// <summary>
    /// Changes on every invalidation and never repeats for the kind folder (it is published in the kind manifest and
    /// read back on open). Pass it to <see cref="AppendAsync"/> so that vectors computed before an invalidation are not
    /// written into the new generation.
    /// </summary>
    public long Generation => _generations.Current.Number;

    /// <summary>
    /// Committed rows, including rows superseded by newer writes of the same key or id: the sequence of the generation
    /// (on a follower, the rows it serves of it).
    /// </summary>
    public long RowCount => _generations.Current.RowCount;

    /// <summary>The generation and its sequence (committed rows), read from one state.</summary>
    public (long Generation, long Sequence) Position
    {
        get
        {
            var generation = _generations.Current;
            return (generation.Number, generation.RowCount);
        }
    }

    /// <summary>True for a follower's store: it serves what the writer published and refuses appends and resets.</summary>
    public bool IsFollower => _follower is not null;

    /// <summary>Bytes of committed data on disk: headers, committed rows and sidecar records (not the sparse reserve of the growing segment).</summary>
    public long ByteCount => _generations.Current.ByteCount;

    /// <summary>Distinct content keys that can be read.</summary>
    public int KeyCount => _generations.Current.Keys.Count;

    /// <summary>Distinct ids that can be read.</summary>
    public int IdCount => _generations.Current.Ids.Count;

    /// <summary>Bytes of memory held by the key and id indexes together (the vectors stay in the page cache).</summary>
    public long IndexBytes
    {
        get
        {
            var generation = _generations.Current;
            return generation.Keys.TableBytes + generation.Ids.TableBytes;
        }
    }

    /// <summary>The generation reads enter; page warming reads through it too.</summary>
    internal GenerationGuard Generations => _generations;

    /// <summary>Write groups committed so far (each shared its fsyncs by all appends in it).</summary>
    internal long CommitGroups => Writer.CommitGroups;

    /// <summary>Held by the writer while it commits a group; tests hold it to make appends queue up.</summary>
    internal Lock WriteGate => Writer.Gate;

    internal int SegmentCount => _generations.Current.Segments.Length;

    internal IReadOnlyList<Segment> SegmentsSnapshot => _generations.Current.Segments;

    private bool Sync => _options.Durability == DurabilityMode.GroupCommit;

    private GroupCommitWriter Writer => _writer ?? throw new InvalidOperationException(
        $"{_model}/{_kindName} is followed read-only from files another server writes: it takes no appends and no invalidations");

    /// <summary>
    /// Copies the newest committed vector of each key into row i of <paramref name="destination"/>,
    /// converted to <paramref name="outputType"/> (little-endian). Rows not found are zero-filled and
    /// <paramref name="found"/>[i] is false. O(1) per key, no allocation.
    /// </summary>
    /// <returns>How many keys were found.</returns>
    public int Gather(ReadOnlySpan<ContentKey> keys, VectorDType outputType, Span<byte> destination, Span<bool> found)
    {
        var generation = _generations.Enter();
        try
        {
            return RowGather.Gather(generation, generation.Keys, keys, outputType, destination, found);
        }
        finally
        {
            generation.Exit();
        }
    }

    /// <summary>As <see cref="Gather"/>, looking rows up by id (the newest write of an id wins).</summary>
    public int GatherByIds(IReadOnlyList<string> ids, VectorDType outputType, Span<byte> destination, Span<bool> found)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var keys = ArrayPool<ContentKey>.Shared.Rent(ids.Count);
        try
        {
            for (var i = 0; i < ids.Count; i++)
            {
                keys[i] = IdKey.FromId(ids[i]);
            }

            var generation = _generations.Enter();
            try
            {
                return RowGather.Gather(generation, generation.Ids, keys.AsSpan(0, ids.Count), outputType, destination, found);
            }
            finally
            {
                generation.Exit();
            }
        }
        finally
        {
            ArrayPool<ContentKey>.Shared.Return(keys);
        }
    }

    /// <summary>
    /// Appends rows. Completes when they are durable under the configured policy and visible to reads.
    /// <see cref="AppendMode.IfAbsent"/> skips a row whose key is committed and (if the row has an id) whose
    /// id maps to the newest row of that key; a row with only an id is skipped if the id is committed.
    /// If <paramref name="expectedGeneration"/> is not -1 and differs from <see cref="Generation"/> when the
    /// rows are written, nothing is written and 0 is returned.
    /// </summary>
    /// <returns>Rows written.</returns>
    /// <exception cref="StorageFullException">The disk is full; none of these rows became visible.</exception>
    /// <exception cref="IOException">Another I/O fault.</exception>
    public ValueTask<int> AppendAsync(RowBatch batch, AppendMode mode, long expectedGeneration)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return batch.Count == 0 ? ValueTask.FromResult(0) : Writer.AppendAsync(batch, mode, expectedGeneration);
    }

    /// <summary>
    /// Drops every row of this kind atomically: the folder is renamed aside in one step; reads running meanwhile
    /// see the old rows or none; appends of the old generation write nothing.
    /// </summary>
    public InvalidationResult Invalidate() => Reset(null);

    /// <summary>
    /// Recovers the kind folder and starts its writer. <paramref name="checkpointed"/> is called on the writer's
    /// thread after each checkpoint of the kind manifest (a segment sealed, or the periodic rewrite), so the owner
    /// can refresh the totals it records; the store never calls its owner otherwise.
    /// </summary>
    internal static VectorStore Open(
        string model, VectorKind kind, string modelDirectory, NpyLayout layout, StorageOptions options, ILogger logger, Trash trash, Action checkpointed)
    {
        string kindName = kind.Name();
        KindManifest? published = KindManifest.TryRead(Path.Combine(modelDirectory, kindName, CacheManifest.FileName), out _);
        var recovered = KindFolderRecovery.Recover(modelDirectory, model, kind, layout, options, logger);
        long rows = recovered.Segments.Sum(segment => (long)segment.Rows);
        long generation = Math.Max(published?.Generation ?? 0, Trash.HighestTrashedGeneration(modelDirectory, kindName));
        // The same generation only if followers can keep what they served from it: same layout, no committed row lost.
        if (published is null || published.Dims != layout.Dims || published.DType != layout.DType || rows < published.Sequence)
        {
            generation = NextGeneration(generation);
        }

        var store = new VectorStore(model, kind, modelDirectory, layout, options, logger, trash, recovered, generation, checkpointed);
        lock (store.Writer.Gate)
        {
            // Durable: the generation chosen here must survive a power cut. A full disk must not stop a cache from
            // opening and serving what it holds.
            store.Writer.TryWriteKindManifest(store._generations.Current, store.Sync);
        }

        return store;
    }

    /// <summary>A follower's store of one kind, empty until its first <see cref="Poll"/>; it writes nothing.</summary>
    internal static VectorStore Follow(string model, VectorKind kind, string modelDirectory, NpyLayout layout, StorageOptions options, ILogger logger) =>
        new(model, kind, modelDirectory, options, logger, new KindFollower(model, kind, modelDirectory, layout, options.SegmentRows, logger));

    /// <summary>On a follower: brings the served rows up to what the writer published (see <see cref="KindFollower"/>).</summary>
    internal void Poll() => _follower?.Poll();

    /// <summary>
    /// A generation above <paramref name="previous"/> and, being at least the clock's milliseconds, above any a deleted
    /// and recreated folder of the same name had: a follower never takes a new folder's rows for its old ones.
    /// </summary>
    private static long NextGeneration(long previous) => Math.Max(previous + 1, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

    /// <summary>
    /// Drops every row, optionally switching to a new vector layout. The new generation's folder is built aside with
    /// its manifest, then the old folder is renamed aside and the new one into place: a reader that sees one
    /// generation's manifest before and after opening a file knows the file is that generation's. Readers of this
    /// process see the old rows or none, never an error; the old files are deleted after the retention.
    /// </summary>
    internal InvalidationResult Reset(NpyLayout? layout)
    {
        InvalidationResult result;
        long generation;
        string trash;
        var writer = Writer;
        lock (writer.Gate)
        {
            var old = _generations.Current;
            if (old.Disposed)
            {
                DiskErrors.ThrowDisposed(nameof(VectorStore));
            }

            result = new InvalidationResult(old.RowCount, old.ByteCount);
            var fresh = StoreGeneration.Empty(NextGeneration(old.Number), layout ?? old.Layout, old.Addressing, disposed: false);
            var staging = Trash.StagingPathFor(_modelDirectory, _kindName, fresh.Number);
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }

            Directory.CreateDirectory(staging);
            KindManifest.Write(Path.Combine(staging, CacheManifest.FileName), Kind, fresh.Layout, fresh.Number, [], Sync);
            trash = Trash.PathFor(_modelDirectory, _kindName, old.Number);
            if (Directory.Exists(_directory))
            {
                Directory.Move(_directory, trash);
            }

            Directory.Move(staging, _directory);
            if (Sync)
            {
                NativeFile.SyncDirectory(_modelDirectory);
            }

            _generations.Replace(fresh); // waits for reads that entered the old generation
            writer.StartOver();
            generation = fresh.Number;
        }

        // Outside the gate: appends to the new generation need not wait for a large folder to be deleted.
        _trash!.DeleteLater(trash);

        StorageLog.CacheInvalidated(_logger, _model, _kindName, result.RowsRemoved, result.BytesRemoved, generation);
        return result;
    }

    /// <summary>Finishes queued appends, writes the manifest and releases files and mappings.</summary>
    internal void Shutdown()
    {
        if (_writer is null)
        {
            _follower!.Shutdown();
            return;
        }

        _writer.Stop();
        lock (_writer.Gate)
        {
            var current = _generations.Current;
            if (current.Disposed)
            {
                return;
            }

            _writer.TryWriteKindManifest(current, Sync);
            _generations.Replace(StoreGeneration.Empty(current.Number, current.Layout, current.Addressing, disposed: true));
        }
    }
}
