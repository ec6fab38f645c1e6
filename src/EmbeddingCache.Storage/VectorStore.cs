using System.Buffers;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using MessagePack;
using Microsoft.Extensions.Logging;
using System.Numerics.Tensors;

namespace EmbeddingCache.Storage;

/// <summary>
/// The vectors of one kind of one model: memory-mapped segments, an in-memory index from content keys
/// and ids to rows, and a single writer that group-commits appends.
/// </summary>
/// <remarks>
/// Reads (<see cref="Gather"/>) take no lock: they copy rows straight from the mappings through an index
/// that one writer updates in place (<see cref="KeyIndex"/>). A segment is unmapped only when a whole
/// generation is retired (invalidation, dispose), after the readers that entered it have left. Every append
/// goes through one loop that drains all queued batches, writes them together and shares two fsyncs among them.
/// </remarks>
public sealed class VectorStore
{
    private const int ChunkBytes = 1 << 20;
    private const long ManifestIntervalMs = 10_000;

    private readonly ModelCache _owner;
    private readonly string _modelDirectory;
    private readonly string _directory;
    private readonly string _kindName;
    private readonly StorageOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _writeGate = new();
    private readonly Channel<PendingAppend> _queue = Channel.CreateUnbounded<PendingAppend>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _writer;

    // Owned by the writer (under _writeGate).
    private readonly List<SelectedRow> _selected = [];
    private readonly Dictionary<ContentKey, long> _groupKeys = [];
    private readonly Dictionary<ContentKey, long> _groupIds = [];
    private readonly ArrayBufferWriter<byte> _sidecarBuffer = new();
    private readonly RowAddressing _addressing;
    private AppendableSegment? _appendable;
    private int _appendableSlot;
    private int _nextNumber;
    private long _lastManifestWrite;
    private long _commitGroups;

    private StoreState _state;

    private VectorStore(ModelCache owner, VectorKind kind, string modelDirectory, NpyLayout layout, StorageOptions options, ILogger logger, RecoveredKind recovered)
    {
        _owner = owner;
        Kind = kind;
        _modelDirectory = modelDirectory;
        _kindName = CacheManifest.KindFolderName(kind);
        _directory = recovered.Directory;
        _options = options;
        _logger = logger;
        _addressing = recovered.Addressing;
        _state = new StoreState(1, layout, [.. recovered.Segments], recovered.Keys, recovered.Ids, disposed: false);
        _appendable = recovered.Appendable;
        _appendableSlot = recovered.Segments.Count - 1;
        _nextNumber = recovered.NextNumber;
        _writer = Task.Run(RunWriterAsync);
    }

    /// <summary>Query or document.</summary>
    public VectorKind Kind { get; }

    /// <summary>Vector width of every row.</summary>
    public int Dims => Volatile.Read(ref _state).Layout.Dims;

    /// <summary>Storage element type.</summary>
    public VectorDType DType => Volatile.Read(ref _state).Layout.DType;

    /// <summary>
    /// Changes on every invalidation. Pass it to <see cref="AppendAsync"/> so that vectors computed before an
    /// invalidation are not written into the new generation.
    /// </summary>
    public long Generation => Volatile.Read(ref _state).Generation;

    /// <summary>Committed rows, including rows superseded by newer writes of the same key or id.</summary>
    public long RowCount
    {
        get
        {
            long rows = 0;
            foreach (Segment segment in Volatile.Read(ref _state).Segments)
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
            foreach (Segment segment in Volatile.Read(ref _state).Segments)
            {
                bytes += segment.ByteCount;
            }

            return bytes;
        }
    }

    /// <summary>Distinct content keys that can be read.</summary>
    public int KeyCount => Volatile.Read(ref _state).Keys.Count;

    /// <summary>Distinct ids that can be read.</summary>
    public int IdCount => Volatile.Read(ref _state).Ids.Count;

    /// <summary>Bytes of committed rows (headers included) that <see cref="Warm"/> reads.</summary>
    internal long WarmableBytes => Volatile.Read(ref _state).Segments.Sum(segment => segment.Layout.FileLength(segment.Rows));

    /// <summary>
    /// Touches every page of the committed rows of the current generation, <paramref name="chunkBytes"/> at a time,
    /// calling <paramref name="pace"/> after each chunk with the bytes touched so far. Each chunk is read inside the
    /// generation like a Gather, so invalidation and shutdown never unmap a segment under it; once the generation is
    /// retired, or <paramref name="pace"/> returns false, it stops.
    /// </summary>
    /// <returns>Bytes touched.</returns>
    internal long Warm(int chunkBytes, Func<long, bool> pace)
    {
        StoreState state = Volatile.Read(ref _state);
        long touched = 0;
        int sink = 0;
        foreach (Segment segment in state.Segments)
        {
            long end = segment.Layout.FileLength(segment.Rows);
            for (long offset = 0; offset < end; offset += chunkBytes)
            {
                int length = (int)Math.Min(chunkBytes, end - offset);
                if (!state.TryEnter())
                {
                    return touched;
                }

                try
                {
                    sink += segment.Mapping.Touch(offset, length);
                }
                finally
                {
                    state.Exit();
                }

                touched += length;
                if (!pace(touched))
                {
                    return touched;
                }
            }
        }

        GC.KeepAlive(sink);
        return touched;
    }

    /// <summary>Bytes of memory held by the key and id indexes together (the vectors stay in the page cache).</summary>
    public long IndexBytes
    {
        get
        {
            StoreState state = Volatile.Read(ref _state);
            return state.Keys.TableBytes + state.Ids.TableBytes;
        }
    }

    /// <summary>Write groups committed so far (each shared its fsyncs by all appends in it).</summary>
    internal long CommitGroups => Interlocked.Read(ref _commitGroups);

    /// <summary>Held by the writer while it commits a group; tests hold it to make appends queue up.</summary>
    internal Lock WriteGate => _writeGate;

    internal int SegmentCount => Volatile.Read(ref _state).Segments.Length;

    /// <summary>
    /// Copies the newest committed vector of each key into row i of <paramref name="destination"/>,
    /// converted to <paramref name="outputType"/> (little-endian). Rows not found are zero-filled and
    /// <paramref name="found"/>[i] is false. O(1) per key, no allocation.
    /// </summary>
    /// <returns>How many keys were found.</returns>
    public int Gather(ReadOnlySpan<ContentKey> keys, VectorDType outputType, Span<byte> destination, Span<bool> found)
    {
        StoreState state = EnterState();
        try
        {
            int rowBytes = CheckGather(state, keys.Length, outputType, destination, found);
            return GatherRows(state, state.Keys, keys, outputType, rowBytes, destination, found);
        }
        finally
        {
            state.Exit();
        }
    }

    /// <summary>As <see cref="Gather"/>, looking rows up by id (the newest write of an id wins).</summary>
    public int GatherByIds(IReadOnlyList<string> ids, VectorDType outputType, Span<byte> destination, Span<bool> found)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ContentKey[] keys = ArrayPool<ContentKey>.Shared.Rent(ids.Count);
        try
        {
            for (int i = 0; i < ids.Count; i++)
            {
                keys[i] = IdKey.FromId(ids[i]);
            }

            StoreState state = EnterState();
            try
            {
                int rowBytes = CheckGather(state, ids.Count, outputType, destination, found);
                return GatherRows(state, state.Ids, keys.AsSpan(0, ids.Count), outputType, rowBytes, destination, found);
            }
            finally
            {
                state.Exit();
            }
        }
        finally
        {
            ArrayPool<ContentKey>.Shared.Return(keys);
        }
    }

    /// <summary>
    /// Looks every key up, then copies the rows. Random rows of a large cache miss the caches and the TLB (about a
    /// microsecond each here), so each pass prefetches the slot or row a few keys ahead: the misses overlap instead
    /// of queueing one after another.
    /// </summary>
    private int GatherRows(
        StoreState state, KeyIndex index, ReadOnlySpan<ContentKey> keys, VectorDType outputType, int rowBytes, Span<byte> destination, Span<bool> found)
    {
        const int SlotsAhead = 16;
        const int RowsAhead = 4;
        uint[] locations = ArrayPool<uint>.Shared.Rent(keys.Length);
        try
        {
            int hits = 0;
            for (int i = 0; i < keys.Length; i++)
            {
                if (i + SlotsAhead < keys.Length)
                {
                    index.Prefetch(keys[i + SlotsAhead]);
                }

                found[i] = index.TryGetValue(keys[i], out locations[i]);
                hits += found[i] ? 1 : 0;
            }

            for (int i = 0; i < keys.Length; i++)
            {
                if (i + RowsAhead < keys.Length && found[i + RowsAhead])
                {
                    PrefetchRow(state, locations[i + RowsAhead]);
                }

                Span<byte> target = destination.Slice(i * rowBytes, rowBytes);
                if (found[i])
                {
                    CopyRow(state, locations[i], outputType, target);
                }
                else
                {
                    target.Clear();
                }
            }

            return hits;
        }
        finally
        {
            ArrayPool<uint>.Shared.Return(locations);
        }
    }

    /// <summary>True when a committed row has this content key.</summary>
    public bool ContainsKey(ContentKey key)
    {
        StoreState state = EnterState();
        try
        {
            return state.Keys.ContainsKey(key);
        }
        finally
        {
            state.Exit();
        }
    }

    /// <summary>True when a committed row has this id.</summary>
    public bool ContainsId(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        ContentKey idKey = IdKey.FromId(id);
        StoreState state = EnterState();
        try
        {
            return state.Ids.ContainsKey(idKey);
        }
        finally
        {
            state.Exit();
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
        if (batch.Count == 0)
        {
            return ValueTask.FromResult(0);
        }

        var pending = new PendingAppend(batch, mode, expectedGeneration);
        if (!_queue.Writer.TryWrite(pending))
        {
            DiskErrors.ThrowDisposed(nameof(VectorStore));
        }

        return new ValueTask<int>(pending.Task);
    }

    /// <summary>Drops every row of this kind atomically: see <see cref="ModelCache.Invalidate"/>.</summary>
    public InvalidationResult Invalidate() => Reset(null);

    internal static VectorStore Open(ModelCache owner, VectorKind kind, string modelDirectory, NpyLayout layout, StorageOptions options, ILogger logger)
    {
        RecoveredKind recovered = KindFolderRecovery.Recover(modelDirectory, owner.Name, kind, layout, options, logger);
        var store = new VectorStore(owner, kind, modelDirectory, layout, options, logger, recovered);
        lock (store._writeGate)
        {
            // Informative only: a full disk must not stop a cache from opening and serving what it holds.
            store.TryWriteKindManifest(store._state);
        }

        return store;
    }

    /// <summary>
    /// Drops every row, optionally switching to a new vector layout. The kind folder is renamed aside in one
    /// step and a fresh one created; readers see the old rows or none, never an error.
    /// </summary>
    internal InvalidationResult Reset(NpyLayout? layout)
    {
        InvalidationResult result;
        long generation;
        string trash;
        lock (_writeGate)
        {
            StoreState old = _state;
            if (old.Disposed)
            {
                DiskErrors.ThrowDisposed(nameof(VectorStore));
            }

            result = new InvalidationResult(RowCount, ByteCount);
            trash = Path.Combine(_modelDirectory, $"{ModelCache.TrashPrefix}{_kindName}-{old.Generation}-{Environment.TickCount64}");
            if (Directory.Exists(_directory))
            {
                Directory.Move(_directory, trash);
            }

            Directory.CreateDirectory(_directory);
            if (Sync)
            {
                NativeFile.SyncDirectory(_modelDirectory);
            }

            var fresh = new StoreState(old.Generation + 1, layout ?? old.Layout, [], new KeyIndex(), new KeyIndex(), disposed: false);
            Volatile.Write(ref _state, fresh);
            old.Retire(); // waits for reads that entered the old generation
            ReleaseSegments(old);
            _appendable = null;
            _nextNumber = 0;
            generation = fresh.Generation;
            TryWriteKindManifest(fresh);
        }

        // Outside the gate: appends to the new generation need not wait for a large folder to be deleted.
        ModelCache.DeleteTrash(trash, _logger);

        StorageLog.CacheInvalidated(_logger, _owner.Name, _kindName, result.RowsRemoved, result.BytesRemoved, generation);
        return result;
    }

    /// <summary>Finishes queued appends, writes the manifest and releases files and mappings.</summary>
    internal void Shutdown()
    {
        _queue.Writer.TryComplete();
        try
        {
            _writer.GetAwaiter().GetResult();
        }
        catch (Exception exception) when (exception is not OutOfMemoryException)
        {
            // Each append already received its own outcome.
        }

        lock (_writeGate)
        {
            StoreState state = _state;
            if (state.Disposed)
            {
                return;
            }

            TryWriteKindManifest(state);
            Volatile.Write(ref _state, new StoreState(state.Generation, state.Layout, [], new KeyIndex(), new KeyIndex(), disposed: true));
            state.Retire();
            ReleaseSegments(state);
            _appendable = null;
        }
    }

    private bool Sync => _options.Durability == DurabilityMode.GroupCommit;

    internal IReadOnlyList<Segment> SegmentsSnapshot => Volatile.Read(ref _state).Segments;

    /// <summary>Enters the current generation; a read that raced with its retirement retries on the next one.</summary>
    private StoreState EnterState()
    {
        while (true)
        {
            StoreState state = Volatile.Read(ref _state);
            if (state.TryEnter())
            {
                return state;
            }
        }
    }

    private static int CheckGather(StoreState state, int count, VectorDType outputType, Span<byte> destination, Span<bool> found)
    {
        if (state.Disposed)
        {
            DiskErrors.ThrowDisposed(nameof(VectorStore));
        }

        int rowBytes = state.Layout.Dims * NpyLayout.ElementSizeOf(outputType);
        if ((long)count * rowBytes > destination.Length)
        {
            DiskErrors.ThrowDestinationTooSmall(nameof(destination), (long)count * rowBytes, destination.Length);
        }

        if (found.Length < count)
        {
            DiskErrors.ThrowDestinationTooSmall(nameof(found), count, found.Length);
        }

        return rowBytes;
    }

    private void PrefetchRow(StoreState state, uint location) =>
        state.Segments[_addressing.SegmentOf(location)].PrefetchRow(_addressing.RowOf(location));

    private void CopyRow(StoreState state, uint location, VectorDType outputType, Span<byte> destination)
    {
        // Segments is read after the index: the writer publishes a new segment before any row in it.
        ReadOnlySpan<byte> source = state.Segments[_addressing.SegmentOf(location)].Row(_addressing.RowOf(location));
        VectorDType storage = state.Layout.DType;
        if (storage == outputType)
        {
            source.CopyTo(destination);
        }
        else if (storage == VectorDType.Float32)
        {
            TensorPrimitives.ConvertToHalf(MemoryMarshal.Cast<byte, float>(source), MemoryMarshal.Cast<byte, Half>(destination));
        }
        else
        {
            TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), MemoryMarshal.Cast<byte, float>(destination));
        }
    }

    private async Task RunWriterAsync()
    {
        ChannelReader<PendingAppend> reader = _queue.Reader;
        var group = new List<PendingAppend>();
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out PendingAppend? pending))
            {
                group.Add(pending);
            }

            lock (_writeGate)
            {
                CommitGroup(group);
            }

            group.Clear();
        }
    }

    private void CommitGroup(List<PendingAppend> group)
    {
        Interlocked.Increment(ref _commitGroups);
        StoreState state = _state;
        Exception? failure = null;
        if (state.Disposed)
        {
            failure = new ObjectDisposedException(nameof(VectorStore));
        }
        else
        {
            SelectRows(group, state);
            if (_selected.Count > 0)
            {
                try
                {
                    WriteSelected(state);
                }
                catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
                {
                    failure = DiskErrors.Classify(exception, $"appending to {_owner.Name}/{_kindName}");
                    if (failure is StorageFullException)
                    {
                        StorageLog.StorageFull(_logger, _owner.Name, _kindName, _selected.Count);
                    }
                    else
                    {
                        StorageLog.AppendFailed(_logger, exception, _owner.Name, _kindName, _selected.Count);
                    }
                }
            }
        }

        foreach (PendingAppend pending in group)
        {
            if (pending.Error is not null)
            {
                pending.TrySetException(pending.Error);
            }
            else if (failure is not null && (pending.Written > 0 || state.Disposed))
            {
                pending.TrySetException(failure);
            }
            else
            {
                pending.TrySetResult(pending.Written);
            }
        }

        _selected.Clear();
        if (!state.Disposed && Environment.TickCount64 - _lastManifestWrite > ManifestIntervalMs)
        {
            TryWriteKindManifest(state);
            _owner.TryWriteManifest();
        }
    }

    private void SelectRows(List<PendingAppend> group, StoreState state)
    {
        _selected.Clear();
        _groupKeys.Clear();
        _groupIds.Clear();
        foreach (PendingAppend pending in group)
        {
            pending.Written = 0;
            if (pending.ExpectedGeneration != -1 && pending.ExpectedGeneration != state.Generation)
            {
                continue;
            }

            RowBatch batch = pending.Batch;
            if (batch.Dims != state.Layout.Dims)
            {
                pending.Error = new ArgumentException($"The batch holds {batch.Dims}-dim vectors; {_owner.Name}/{_kindName} stores {state.Layout.Dims}.", "batch");
                continue;
            }

            for (int i = 0; i < batch.Count; i++)
            {
                ContentKey? key = batch.KeyAt(i);
                string? id = batch.IdAt(i);
                ContentKey? idKey = id is null ? null : IdKey.FromId(id);
                if (pending.Mode == AppendMode.IfAbsent && IsStored(state, key, idKey))
                {
                    continue;
                }

                long provisional = -(_selected.Count + 1); // rows of this group are told apart from committed ones by sign
                if (key is { } k)
                {
                    _groupKeys[k] = provisional;
                }

                if (idKey is { } ik)
                {
                    _groupIds[ik] = provisional;
                }

                _selected.Add(new SelectedRow(batch, i, key, idKey));
                pending.Written++;
            }
        }
    }

    private bool IsStored(StoreState state, ContentKey? key, ContentKey? idKey)
    {
        if (key is { } k)
        {
            if (!TryLocate(_groupKeys, state.Keys, k, out long keyLocation))
            {
                return false;
            }

            // Same key under another id (or an id now pointing elsewhere): write, so the id finds this vector.
            return idKey is not { } ik || (TryLocate(_groupIds, state.Ids, ik, out long idLocation) && idLocation == keyLocation);
        }

        return idKey is { } onlyId && TryLocate(_groupIds, state.Ids, onlyId, out _);
    }

    private static bool TryLocate(Dictionary<ContentKey, long> group, KeyIndex committed, ContentKey key, out long location)
    {
        if (group.TryGetValue(key, out location))
        {
            return true;
        }

        bool found = committed.TryGetValue(key, out uint committedLocation);
        location = committedLocation;
        return found;
    }

    private void WriteSelected(StoreState state)
    {
        NpyLayout layout = state.Layout;
        int position = 0;
        while (position < _selected.Count)
        {
            if (_appendable is { FreeRows: 0 })
            {
                Seal(state);
            }

            AppendableSegment segment = _appendable ?? StartSegment(state);
            int count = Math.Min(_selected.Count - position, segment.FreeRows);
            int firstRow = segment.Rows;
            try
            {
                WriteVectors(segment, layout, position, count, firstRow);
                _sidecarBuffer.ResetWrittenCount();
                var writer = new MessagePackWriter(_sidecarBuffer);
                for (int i = position; i < position + count; i++)
                {
                    KeySidecar.WriteRecord(ref writer, _selected[i].Key, _selected[i].Batch.IdAt(_selected[i].Row));
                }

                writer.Flush();
                segment.WriteSidecar(_sidecarBuffer.WrittenSpan);
                segment.Commit(firstRow + count);
            }
            catch
            {
                if (segment.Rows == firstRow + count)
                {
                    Publish(state, position, count, firstRow); // committed; only the final fsync failed
                }
                else
                {
                    segment.RollBack();
                }

                throw;
            }

            Publish(state, position, count, firstRow);
            position += count;
            if (segment.FreeRows == 0)
            {
                try
                {
                    Seal(state);
                }
                catch (IOException exception)
                {
                    // The rows are committed; sealing is retried before the next write.
                    StorageLog.AppendFailed(_logger, exception, _owner.Name, _kindName, 0);
                }
            }
        }
    }

    private void WriteVectors(AppendableSegment segment, NpyLayout layout, int position, int count, int firstRow)
    {
        int rowBytes = layout.RowBytes;
        int rowsPerChunk = Math.Max(1, ChunkBytes / rowBytes);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Min(count, rowsPerChunk) * rowBytes);
        try
        {
            for (int done = 0; done < count;)
            {
                int rows = Math.Min(rowsPerChunk, count - done);
                for (int r = 0; r < rows; r++)
                {
                    SelectedRow row = _selected[position + done + r];
                    ReadOnlySpan<float> vector = row.Batch.VectorAt(row.Row);
                    Span<byte> target = buffer.AsSpan(r * rowBytes, rowBytes);
                    if (layout.DType == VectorDType.Float32)
                    {
                        MemoryMarshal.AsBytes(vector).CopyTo(target);
                    }
                    else
                    {
                        TensorPrimitives.ConvertToHalf(vector, MemoryMarshal.Cast<byte, Half>(target));
                    }
                }

                segment.WriteVectors(buffer.AsSpan(0, rows * rowBytes), firstRow + done);
                done += rows;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void Publish(StoreState state, int position, int count, int firstRow)
    {
        for (int i = 0; i < count; i++)
        {
            SelectedRow row = _selected[position + i];
            uint location = _addressing.Pack(_appendableSlot, firstRow + i);
            if (row.Key is { } key)
            {
                state.Keys.Set(key, location);
            }

            if (row.IdKey is { } idKey)
            {
                state.Ids.Set(idKey, location);
            }
        }
    }

    private AppendableSegment StartSegment(StoreState state)
    {
        Directory.CreateDirectory(_directory); // an invalidation that failed half-way may have left none
        if (state.Segments.Length >= _addressing.MaxSegments)
        {
            throw new IOException($"{_owner.Name}/{_kindName} holds {state.Segments.Length} segments, the most its index addresses at this segment size; raise SegmentRows");
        }

        int number = _nextNumber++;
        AppendableSegment segment = AppendableSegment.Create(_directory, number, state.Layout, _options.SegmentRows, Sync);
        state.Segments = [.. state.Segments, segment];
        _appendable = segment;
        _appendableSlot = state.Segments.Length - 1;
        return segment;
    }

    private void Seal(StoreState state)
    {
        AppendableSegment segment = _appendable!;
        SealedSegment sealedSegment = segment.Seal(_directory);
        Segment[] segments = [.. state.Segments];
        segments[_appendableSlot] = sealedSegment; // same mapping: a read may use either object
        state.Segments = segments;
        segment.Dispose();
        _appendable = null;
        StorageLog.SegmentSealed(_logger, _owner.Name, _kindName, Path.GetFileName(sealedSegment.NpyPath), sealedSegment.Rows);
        TryWriteKindManifest(state);
        _owner.TryWriteManifest();
    }

    private void ReleaseSegments(StoreState state)
    {
        foreach (Segment segment in state.Segments)
        {
            if (segment is AppendableSegment appendable)
            {
                appendable.Dispose();
            }
            else
            {
                segment.Mapping.Dispose();
            }
        }
    }

    private void WriteKindManifest(StoreState state)
    {
        CacheManifest.WriteKind(Path.Combine(_directory, CacheManifest.FileName), Kind, state.Layout, state.Segments, Sync);
        _lastManifestWrite = Environment.TickCount64;
    }

    private void TryWriteKindManifest(StoreState state)
    {
        try
        {
            WriteKindManifest(state);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            StorageLog.ManifestNotWritten(_logger, exception, $"{_owner.Name}/{_kindName}");
        }
    }

    /// <summary>
    /// What readers see: a generation's layout, segments and index. Replaced whole on invalidation and
    /// dispose; the replaced one is retired once the reads inside it have left, and only then unmapped.
    /// </summary>
    private sealed class StoreState(long generation, NpyLayout layout, Segment[] segments, KeyIndex keys, KeyIndex ids, bool disposed)
    {
        private Segment[] _segments = segments;
        private int _readers;
        private int _retired;

        public long Generation { get; } = generation;

        public NpyLayout Layout { get; } = layout;

        /// <summary>Replaced (copy on write) by the writer when a segment starts or is sealed.</summary>
        public Segment[] Segments
        {
            get => Volatile.Read(ref _segments);
            set => Volatile.Write(ref _segments, value);
        }

        public KeyIndex Keys { get; } = keys;

        public KeyIndex Ids { get; } = ids;

        public bool Disposed { get; } = disposed;

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
        /// Marks the state retired (it must no longer be current) and waits until no read is inside. The full
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
    }

    private readonly record struct SelectedRow(RowBatch Batch, int Row, ContentKey? Key, ContentKey? IdKey);

    private sealed class PendingAppend(RowBatch batch, AppendMode mode, long expectedGeneration)
        : TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public RowBatch Batch { get; } = batch;

        public AppendMode Mode { get; } = mode;

        public long ExpectedGeneration { get; } = expectedGeneration;

        public int Written { get; set; }

        public Exception? Error { get; set; }
    }
}
