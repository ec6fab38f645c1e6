using Microsoft.Win32.SafeHandles;

namespace EmbeddingCache.Storage;

/// <summary>
/// The one segment of a kind that grows. Its file is pre-sized (sparse) to hold <see cref="Capacity"/> rows,
/// so it is mapped once for reads; writes go through pwrite, never the mapping, so a full disk is an
/// exception rather than SIGBUS. A row becomes committed only when the header count covers it, and the
/// count is rewritten only after the row bytes and sidecar records are on disk (invariant N1).
/// </summary>
internal sealed class AppendableSegment : Segment, IDisposable
{
    private readonly SafeFileHandle _npy;
    private readonly SafeFileHandle _sidecar;
    private readonly bool _sync;
    private readonly byte[] _countWord = new byte[NpyLayout.CountWidth];
    private int _rows;
    private long _sidecarBytes;
    private long _pendingSidecarBytes;
    private bool _sealed;

    private AppendableSegment(string directory, int number, NpyLayout layout, int capacity, int rows, long sidecarBytes, bool sync)
        : base(directory, number, layout, SegmentMapping.Open(Path.Combine(directory, NpyName(number))))
    {
        Capacity = capacity;
        _rows = rows;
        _sidecarBytes = sidecarBytes;
        _sync = sync;
        try
        {
            _npy = OpenForWrite(NpyPath, FileMode.Open);
            _sidecar = OpenForWrite(SidecarPath, FileMode.OpenOrCreate);
        }
        catch
        {
            _npy?.Dispose();
            Mapping.Dispose();
            throw;
        }
    }

    public int Capacity { get; }

    public override int Rows => Volatile.Read(ref _rows);

    public override long SidecarBytes => Volatile.Read(ref _sidecarBytes);

    public override bool IsSealed => false;

    public int FreeRows => Capacity - _rows;

    /// <summary>
    /// Creates segment <paramref name="number"/> with a zero-row header. The .npy appears by rename, so a
    /// crash never leaves a half-written header under a segment name.
    /// </summary>
    public static AppendableSegment Create(string directory, int number, NpyLayout layout, int capacity, bool sync)
    {
        var npyPath = Path.Combine(directory, NpyName(number));
        var sidecarPath = Path.Combine(directory, SidecarName(number));
        var temporary = npyPath + AtomicFile.TemporarySuffix;
        var published = false;
        try
        {
            using (SafeFileHandle handle = OpenForWrite(temporary, FileMode.Create))
            {
                var header = new byte[layout.HeaderLength];
                layout.WriteHeader(header, 0);
                RandomAccess.Write(handle, header, 0);
                RandomAccess.SetLength(handle, layout.FileLength(capacity));
                if (sync)
                {
                    NativeFile.SyncData(handle, temporary);
                }
            }

            // An empty sidecar first: a segment whose sidecar is missing would read as zero rows anyway.
            using (OpenForWrite(sidecarPath, FileMode.Create))
            {
            }

            File.Move(temporary, npyPath, overwrite: false);
            published = true;
            if (sync)
            {
                NativeFile.SyncDirectory(directory);
            }

            return new AppendableSegment(directory, number, layout, capacity, rows: 0, sidecarBytes: 0, sync);
        }
        catch (Exception exception)
        {
            TryDelete(temporary);
            if (published)
            {
                TryDelete(npyPath);
                TryDelete(sidecarPath);
            }

            throw DiskErrors.Classify(exception, "starting a new segment");
        }
    }

    /// <summary>Continues a segment that recovery has checked and sized.</summary>
    public static AppendableSegment Resume(string directory, int number, NpyLayout layout, int capacity, int rows, long sidecarBytes, bool sync) =>
        new(directory, number, layout, capacity, rows, sidecarBytes, sync);

    /// <summary>Writes vector bytes of uncommitted rows starting at <paramref name="firstRow"/>.</summary>
    public void WriteVectors(ReadOnlySpan<byte> bytes, int firstRow) =>
        RandomAccess.Write(_npy, bytes, Layout.FileLength(firstRow));

    /// <summary>Writes sidecar records after those already written in this step.</summary>
    public void WriteSidecar(ReadOnlySpan<byte> records)
    {
        RandomAccess.Write(_sidecar, records, _sidecarBytes + _pendingSidecarBytes);
        _pendingSidecarBytes += records.Length;
    }

    /// <summary>
    /// Makes the rows written in this step durable, then publishes <paramref name="rows"/> in the header.
    /// If this throws before the count is written, nothing was committed and the step is rolled back.
    /// A failure of the last fsync is thrown after the rows are committed: they are whole and in the file.
    /// </summary>
    public void Commit(int rows)
    {
        try
        {
            if (_sync && !FaultInjection.SkipGroupCommitSync)
            {
                NativeFile.SyncData(_npy, NpyPath);
                NativeFile.SyncData(_sidecar, SidecarPath);
            }

            NpyLayout.FormatCount(_countWord, rows);
            RandomAccess.Write(_npy, _countWord, Layout.CountOffset);
        }
        catch
        {
            RollBack();
            throw;
        }

        Volatile.Write(ref _sidecarBytes, _sidecarBytes + _pendingSidecarBytes);
        _pendingSidecarBytes = 0;
        Volatile.Write(ref _rows, rows);
        if (_sync)
        {
            NativeFile.SyncData(_npy, NpyPath);
        }
    }

    /// <summary>Drops sidecar bytes of a step that failed, so the next step's records line up with rows.</summary>
    public void RollBack()
    {
        _pendingSidecarBytes = 0;
        try
        {
            RandomAccess.SetLength(_sidecar, _sidecarBytes);
        }
        catch (IOException)
        {
            // Later records are written at the committed offset anyway, and recovery stops at the header count.
        }
    }

    /// <summary>
    /// Truncates the file to its rows, makes it immutable and closes the write handles. The sealed segment
    /// keeps this mapping: readers only touch committed rows, which lie within the truncated file.
    /// </summary>
    public SealedSegment Seal(string directory)
    {
        RandomAccess.SetLength(_npy, Layout.FileLength(_rows));
        if (_sync)
        {
            NativeFile.SyncData(_npy, NpyPath); // the size changed, which fdatasync also flushes
        }

        _sealed = true;
        _npy.Dispose();
        _sidecar.Dispose();
        return new SealedSegment(directory, Number, Layout, _rows, _sidecarBytes, Mapping);
    }

    /// <summary>Closes the file handles, and the mapping unless a sealed segment took it over.</summary>
    public void Dispose()
    {
        _npy.Dispose();
        _sidecar.Dispose();
        if (!_sealed)
        {
            Mapping.Dispose();
        }
    }

    internal static SafeFileHandle OpenForWrite(string path, FileMode mode) =>
        File.OpenHandle(path, mode, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
