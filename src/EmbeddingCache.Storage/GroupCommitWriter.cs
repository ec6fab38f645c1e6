using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using MessagePack;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Storage;

/// <summary>
/// The single writer of one kind. Every append goes through one loop that drains all queued batches, writes them
/// together into the appendable segment and shares two fsyncs among them, then publishes the rows in the current
/// generation's index. It starts and seals segments, publishes the kind manifest for followers at most every
/// <see cref="StorageOptions.PublishIntervalMs"/> (and once more when a burst has gone quiet), and rewrites it durably
/// at checkpoints.
/// </summary>
internal sealed class GroupCommitWriter
{
    private const int ChunkBytes = 1 << 20;
    private const long ManifestIntervalMs = 10_000;

    private readonly GenerationGuard _generations;
    private readonly string _model;
    private readonly VectorKind _kind;
    private readonly string _kindName;
    private readonly string _directory;
    private readonly StorageOptions _options;
    private readonly ILogger _logger;
    private readonly Action _checkpointed;
    private readonly Lock _gate = new();
    private readonly Channel<PendingAppend> _queue = Channel.CreateUnbounded<PendingAppend>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _loop;

    // Owned by the writer (under _gate).
    private readonly List<SelectedRow> _selected = [];
    private readonly Dictionary<ContentKey, long> _groupKeys = [];
    private readonly Dictionary<ContentKey, long> _groupIds = [];
    private readonly ArrayBufferWriter<byte> _sidecarBuffer = new();
    private AppendableSegment? _appendable;
    private int _appendableSlot;
    private int _nextNumber;
    private long _lastManifestWrite;
    private long _lastPublish;
    private bool _unpublished;
    private long _commitGroups;

    /// <param name="generations">The generation whose segments and index the writer extends.</param>
    /// <param name="model">The model's name, for messages and logs.</param>
    /// <param name="kind">The kind written.</param>
    /// <param name="directory">The kind folder.</param>
    /// <param name="appendable">The segment recovery left growing, if any; it is the last of the generation's segments.</param>
    /// <param name="nextNumber">The file number of the next segment to start.</param>
    /// <param name="options">Segment size and durability.</param>
    /// <param name="logger">Where write failures and seals are logged.</param>
    /// <param name="checkpointed">
    /// Called on the writer's thread after it rewrote the kind manifest at a checkpoint (a segment sealed, or the
    /// periodic rewrite after a commit), so the owner can refresh what it records about the kind.
    /// </param>
    public GroupCommitWriter(
        GenerationGuard generations, string model, VectorKind kind, string directory, AppendableSegment? appendable, int nextNumber,
        StorageOptions options, ILogger logger, Action checkpointed)
    {
        _generations = generations;
        _model = model;
        _kind = kind;
        _kindName = kind.Name();
        _directory = directory;
        _appendable = appendable;
        _appendableSlot = generations.Current.Segments.Length - 1;
        _nextNumber = nextNumber;
        _options = options;
        _logger = logger;
        _checkpointed = checkpointed;
        _loop = Task.Run(RunAsync);
    }

    /// <summary>Held while a group commits; whoever replaces the generation holds it too. Tests hold it to make appends queue up.</summary>
    public Lock Gate => _gate;

    /// <summary>Write groups committed so far (each shared its fsyncs by all appends in it).</summary>
    public long CommitGroups => Interlocked.Read(ref _commitGroups);

    private bool Sync => _options.Durability == DurabilityMode.GroupCommit;

    /// <summary>Queues a batch for the next group: see <see cref="VectorStore.AppendAsync"/>.</summary>
    public ValueTask<int> AppendAsync(RowBatch batch, AppendMode mode, long expectedGeneration)
    {
        var pending = new PendingAppend(batch, mode, expectedGeneration);
        if (!_queue.Writer.TryWrite(pending))
        {
            DiskErrors.ThrowDisposed(nameof(VectorStore));
        }

        return new ValueTask<int>(pending.Task);
    }

    /// <summary>
    /// Forgets the appendable segment after the holder of <see cref="Gate"/> replaced the generation with an empty
    /// one over a fresh folder (whose manifest it wrote): the next row starts segment 0 there.
    /// </summary>
    public void StartOver()
    {
        _appendable = null;
        _nextNumber = 0;
        _unpublished = false;
    }

    /// <summary>Refuses new appends and waits until the queued ones have their outcome.</summary>
    public void Stop()
    {
        _queue.Writer.TryComplete();
        try
        {
            _loop.GetAwaiter().GetResult();
        }
        catch (Exception exception) when (exception is not OutOfMemoryException)
        {
            // Each append already received its own outcome.
        }
    }

    /// <summary>
    /// Rewrites the kind manifest (under <see cref="Gate"/>); a failure is logged, never thrown: the rows are committed
    /// and recovery rebuilds the manifest, so only followers wait for the next one. <paramref name="sync"/> makes it
    /// durable (checkpoints); a publish needs no fsync.
    /// </summary>
    public void TryWriteKindManifest(StoreGeneration generation, bool sync)
    {
        // Also on failure: a full disk is retried at the next commit, at most every interval, not by a loop of warnings.
        _lastPublish = Environment.TickCount64;
        _unpublished = false;
        try
        {
            KindManifest.Write(Path.Combine(_directory, CacheManifest.FileName), _kind, generation.Layout, generation.Number, generation.Segments, sync);
            if (sync)
            {
                _lastManifestWrite = _lastPublish;
            }
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            StorageLog.ManifestNotWritten(_logger, exception, $"{_model}/{_kindName}");
        }
    }

    private async Task RunAsync()
    {
        var reader = _queue.Reader;
        var group = new List<PendingAppend>();
        while (await WaitForAppendsAsync(reader).ConfigureAwait(false))
        {
            while (reader.TryRead(out var pending))
            {
                group.Add(pending);
            }

            lock (_gate)
            {
                CommitGroup(group);
            }

            group.Clear();
        }

        lock (_gate)
        {
            PublishIfDue(force: true);
        }
    }

    /// <summary>
    /// Waits for the next appends; while committed rows are unpublished, only until their publish is due, then
    /// publishes them: the last rows of a burst reach followers without waiting for another append.
    /// </summary>
    private async ValueTask<bool> WaitForAppendsAsync(ChannelReader<PendingAppend> reader)
    {
        while (true)
        {
            long due;
            bool unpublished;
            lock (_gate)
            {
                due = _lastPublish + _options.PublishIntervalMs - Environment.TickCount64;
                if (_unpublished && due <= 0)
                {
                    PublishIfDue(force: true);
                }

                unpublished = _unpublished;
            }

            if (!unpublished || reader.TryPeek(out _))
            {
                return await reader.WaitToReadAsync().ConfigureAwait(false);
            }

            using var quiet = new CancellationTokenSource(TimeSpan.FromMilliseconds(Math.Max(1, due)));
            try
            {
                return await reader.WaitToReadAsync(quiet.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Quiet long enough: publish on the next turn.
            }
        }
    }

    /// <summary>Publishes the current generation's kind manifest if rows are unpublished and the interval has passed (or <paramref name="force"/>).</summary>
    private void PublishIfDue(bool force)
    {
        var generation = _generations.Current;
        if (!_unpublished || generation.Disposed)
        {
            return;
        }

        if (force || Environment.TickCount64 - _lastPublish >= _options.PublishIntervalMs)
        {
            TryWriteKindManifest(generation, sync: false);
        }
    }

    private void CommitGroup(List<PendingAppend> group)
    {
        Interlocked.Increment(ref _commitGroups);
        var generation = _generations.Current;
        Exception? failure = null;
        if (generation.Disposed)
        {
            failure = new ObjectDisposedException(nameof(VectorStore));
        }
        else
        {
            SelectRows(group, generation);
            if (_selected.Count > 0)
            {
                try
                {
                    WriteSelected(generation);
                }
                catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
                {
                    failure = DiskErrors.Classify(exception, $"appending to {_model}/{_kindName}");
                    if (failure is StorageFullException)
                    {
                        StorageLog.StorageFull(_logger, _model, _kindName, _selected.Count);
                    }
                    else
                    {
                        StorageLog.AppendFailed(_logger, exception, _model, _kindName, _selected.Count);
                    }
                }
            }
        }

        // Before the acknowledgements: with a zero interval, an acknowledged row is already published.
        _unpublished |= _selected.Count > 0;
        PublishIfDue(force: false);

        foreach (var pending in group)
        {
            if (pending.Error is not null)
            {
                pending.TrySetException(pending.Error);
            }
            else if (failure is not null && (pending.Written > 0 || generation.Disposed))
            {
                pending.TrySetException(failure);
            }
            else
            {
                pending.TrySetResult(pending.Written);
            }
        }

        _selected.Clear();
        if (!generation.Disposed && Environment.TickCount64 - _lastManifestWrite > ManifestIntervalMs)
        {
            Checkpoint(generation);
        }
    }

    private void SelectRows(List<PendingAppend> group, StoreGeneration generation)
    {
        _selected.Clear();
        _groupKeys.Clear();
        _groupIds.Clear();
        foreach (var pending in group)
        {
            pending.Written = 0;
            if (pending.ExpectedGeneration != -1 && pending.ExpectedGeneration != generation.Number)
            {
                continue;
            }

            var batch = pending.Batch;
            if (batch.Dims != generation.Layout.Dims)
            {
                pending.Error = new ArgumentException($"The batch holds {batch.Dims}-dim vectors; {_model}/{_kindName} stores {generation.Layout.Dims}.", "batch");
                continue;
            }

            for (var i = 0; i < batch.Count; i++)
            {
                var key = batch.KeyAt(i);
                var id = batch.IdAt(i);
                ContentKey? idKey = id is null ? null : IdKey.FromId(id);
                if (pending.Mode == AppendMode.IfAbsent && IsStored(generation, key, idKey))
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

    private bool IsStored(StoreGeneration generation, ContentKey? key, ContentKey? idKey)
    {
        if (key is { } k)
        {
            if (!TryLocate(_groupKeys, generation.Keys, k, out var keyLocation))
            {
                return false;
            }

            // Same key under another id (or an id now pointing elsewhere): write, so the id finds this vector.
            return idKey is not { } ik || (TryLocate(_groupIds, generation.Ids, ik, out var idLocation) && idLocation == keyLocation);
        }

        return idKey is { } onlyId && TryLocate(_groupIds, generation.Ids, onlyId, out _);
    }

    private static bool TryLocate(Dictionary<ContentKey, long> group, KeyIndex committed, ContentKey key, out long location)
    {
        if (group.TryGetValue(key, out location))
        {
            return true;
        }

        var found = committed.TryGetValue(key, out var committedLocation);
        location = committedLocation;
        return found;
    }

    private void WriteSelected(StoreGeneration generation)
    {
        var layout = generation.Layout;
        var position = 0;
        while (position < _selected.Count)
        {
            if (_appendable is { FreeRows: 0 })
            {
                Seal(generation);
            }

            var segment = _appendable ?? StartSegment(generation);
            var count = Math.Min(_selected.Count - position, segment.FreeRows);
            var firstRow = segment.Rows;
            try
            {
                WriteVectors(segment, layout, position, count, firstRow);
                _sidecarBuffer.ResetWrittenCount();
                var writer = new MessagePackWriter(_sidecarBuffer);
                for (var i = position; i < position + count; i++)
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
                    Publish(generation, position, count, firstRow); // committed; only the final fsync failed
                }
                else
                {
                    segment.RollBack();
                }

                throw;
            }

            Publish(generation, position, count, firstRow);
            position += count;
            if (segment.FreeRows == 0)
            {
                try
                {
                    Seal(generation);
                }
                catch (IOException exception)
                {
                    // The rows are committed; sealing is retried before the next write.
                    StorageLog.AppendFailed(_logger, exception, _model, _kindName, 0);
                }
            }
        }
    }

    private void WriteVectors(AppendableSegment segment, NpyLayout layout, int position, int count, int firstRow)
    {
        var rowBytes = layout.RowBytes;
        var rowsPerChunk = Math.Max(1, ChunkBytes / rowBytes);
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(count, rowsPerChunk) * rowBytes);
        try
        {
            for (var done = 0; done < count;)
            {
                var rows = Math.Min(rowsPerChunk, count - done);
                for (var r = 0; r < rows; r++)
                {
                    var row = _selected[position + done + r];
                    var vector = row.Batch.VectorAt(row.Row);
                    var target = buffer.AsSpan(r * rowBytes, rowBytes);
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

    private void Publish(StoreGeneration generation, int position, int count, int firstRow)
    {
        for (var i = 0; i < count; i++)
        {
            var row = _selected[position + i];
            var location = generation.Addressing.Pack(_appendableSlot, firstRow + i);
            if (row.Key is { } key)
            {
                generation.Keys.Set(key, location);
            }

            if (row.IdKey is { } idKey)
            {
                generation.Ids.Set(idKey, location);
            }
        }
    }

    private AppendableSegment StartSegment(StoreGeneration generation)
    {
        Directory.CreateDirectory(_directory); // an invalidation that failed half-way may have left none
        if (generation.Segments.Length >= generation.Addressing.MaxSegments)
        {
            throw new IOException($"{_model}/{_kindName} holds {generation.Segments.Length} segments, the most its index addresses at this segment size; raise SegmentRows");
        }

        var number = _nextNumber++;
        var segment = AppendableSegment.Create(_directory, number, generation.Layout, _options.SegmentRows, Sync);
        generation.Segments = [.. generation.Segments, segment];
        _appendable = segment;
        _appendableSlot = generation.Segments.Length - 1;
        return segment;
    }

    private void Seal(StoreGeneration generation)
    {
        var segment = _appendable!;
        var sealedSegment = segment.Seal(_directory);
        Segment[] segments = [.. generation.Segments];
        segments[_appendableSlot] = sealedSegment; // same mapping: a read may use either object
        generation.Segments = segments;
        segment.Dispose();
        _appendable = null;
        StorageLog.SegmentSealed(_logger, _model, _kindName, Path.GetFileName(sealedSegment.NpyPath), sealedSegment.Rows);
        Checkpoint(generation);
    }

    private void Checkpoint(StoreGeneration generation)
    {
        TryWriteKindManifest(generation, Sync);
        _checkpointed();
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
