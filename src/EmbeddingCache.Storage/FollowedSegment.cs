using System.Buffers;
using Microsoft.Win32.SafeHandles;

namespace EmbeddingCache.Storage;

/// <summary>
/// A segment as a follower serves it: mapped through its own read handle, with the rows it has indexed so far. The
/// follower's poller raises <see cref="Rows"/> to min(the published rows, the header count, the complete sidecar records),
/// reading only the sidecar bytes past the ones it already read. The handles keep reading the file they opened even after
/// the writer renames it aside (an invalidation) or a copy is renamed over its name; the follower then maps the new one.
/// </summary>
internal sealed class FollowedSegment : Segment, IDisposable
{
    // A chunk holds thousands of records (an id is at most a few KiB of UTF-8); a chunk's records are indexed before the next is read.
    private const int ChunkBytes = 4 << 20;
    private const int ChunkRecords = 65536;

    private readonly SafeFileHandle _npy;
    private readonly FileIdentity? _identity;
    private SafeFileHandle? _sidecar;
    private int _rows;
    private long _sidecarBytes;
    private bool _sealed;

    private FollowedSegment(string directory, int number, NpyLayout layout, SafeFileHandle npy, SegmentMapping mapping, SafeFileHandle? sidecar)
        : base(directory, number, layout, mapping)
    {
        _npy = npy;
        _sidecar = sidecar;
        _identity = NativeFile.IdentityOf(npy);
    }

    public override int Rows => Volatile.Read(ref _rows);

    public override long SidecarBytes => Volatile.Read(ref _sidecarBytes);

    public override bool IsSealed => Volatile.Read(ref _sealed);

    /// <summary>Opens and maps segment <paramref name="number"/> of a kind folder; no row is served until <see cref="Extend"/>.</summary>
    public static FollowedSegment Open(string directory, int number, NpyLayout layout)
    {
        SafeFileHandle npy = KindFolderFiles.OpenForRead(Path.Combine(directory, NpyName(number)));
        SegmentMapping? mapping = null;
        try
        {
            mapping = SegmentMapping.Open(npy);
            return new FollowedSegment(directory, number, layout, npy, mapping, TryOpenSidecar(Path.Combine(directory, SidecarName(number))));
        }
        catch
        {
            mapping?.Dispose();
            npy.Dispose();
            throw;
        }
    }

    /// <summary>
    /// True when serving <paramref name="rows"/> rows needs this segment mapped anew: another file is now under its name
    /// (a copy renamed over it), or its file or mapping is shorter than those rows.
    /// </summary>
    public bool NeedsReopen(int rows)
    {
        long needed = Layout.FileLength(rows);
        if (Mapping.Length < needed || RandomAccess.GetLength(_npy) < needed)
        {
            return true;
        }

        return _identity is { } identity && NativeFile.IdentityOf(NpyPath) is { } current && current != identity;
    }

    /// <summary>This segment opened and mapped anew under its name, keeping the rows and sidecar position already read.</summary>
    public FollowedSegment Reopen()
    {
        FollowedSegment fresh = Open(Path.GetDirectoryName(NpyPath)!, Number, Layout);
        fresh._rows = Rows;
        fresh._sidecarBytes = SidecarBytes;
        fresh._sealed = IsSealed;
        return fresh;
    }

    /// <summary>
    /// Indexes the rows from <see cref="Rows"/> up to <paramref name="published"/> that the header count and the complete
    /// sidecar records also cover, then raises <see cref="Rows"/>. Poller only.
    /// </summary>
    /// <returns>Null, or what is wrong with the files (the rows before it keep being served).</returns>
    public string? Extend(int published, bool isSealed, StoreGeneration generation, int slot)
    {
        Volatile.Write(ref _sealed, isSealed);
        int rows = _rows;
        if (published <= rows)
        {
            return null;
        }

        SegmentHeader header = KindFolderFiles.ReadHeader(_npy, Layout);
        if (header.Count is not { } count)
        {
            return $"{NpyName(Number)}: {header.Problem}";
        }

        long mappedRows = Math.Max(0, Mapping.Length - Layout.HeaderLength) / Layout.RowBytes;
        int limit = (int)Math.Min(Math.Min(published, count), Math.Min(header.FittingRows, mappedRows));
        if (limit <= rows)
        {
            return null;
        }

        _sidecar ??= TryOpenSidecar(SidecarPath);
        if (_sidecar is null)
        {
            return null; // created an instant before its sidecar, or copied before it: no record is complete yet
        }

        long sidecarLength = RandomAccess.GetLength(_sidecar);
        byte[] content = ArrayPool<byte>.Shared.Rent((int)Math.Min(ChunkBytes, Math.Max(0, sidecarLength - _sidecarBytes)));
        ContentKey?[] keys = ArrayPool<ContentKey?>.Shared.Rent(Math.Min(limit - rows, ChunkRecords));
        ContentKey?[] idKeys = ArrayPool<ContentKey?>.Shared.Rent(keys.Length);
        try
        {
            // In chunks: the first poll of a large segment reads its whole sidecar, later ones only what was appended.
            while (rows < limit && _sidecarBytes < sidecarLength)
            {
                int chunk = (int)Math.Min(content.Length, sidecarLength - _sidecarBytes);
                int read = RandomAccess.Read(_sidecar, content.AsSpan(0, chunk), _sidecarBytes);
                int wanted = Math.Min(limit - rows, keys.Length);
                KeySidecar.Stop stop = KeySidecar.Read(content.AsSpan(0, read), wanted, keys, idKeys, out int records, out long consumed);
                Index(generation, slot, rows, keys, idKeys, records);
                rows += records;
                Volatile.Write(ref _sidecarBytes, _sidecarBytes + consumed);
                Volatile.Write(ref _rows, rows);
                if (stop == KeySidecar.Stop.Invalid && records < wanted)
                {
                    return $"{SidecarName(Number)}: record {rows} is not a [key, id] record";
                }

                if (records == 0)
                {
                    break; // a record still being written (a torn tail): the next poll reads it whole
                }
            }

            return null;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(content);
            ArrayPool<ContentKey?>.Shared.Return(keys);
            ArrayPool<ContentKey?>.Shared.Return(idKeys);
        }
    }

    private static void Index(StoreGeneration generation, int slot, int firstRow, ContentKey?[] keys, ContentKey?[] idKeys, int records)
    {
        RowAddressing addressing = generation.Addressing;
        for (int r = 0; r < records; r++)
        {
            uint location = addressing.Pack(slot, firstRow + r);
            if (keys[r] is { } key)
            {
                generation.Keys.Set(key, location);
            }

            if (idKeys[r] is { } idKey)
            {
                generation.Ids.Set(idKey, location);
            }
        }
    }

    public void Dispose()
    {
        Mapping.Dispose();
        _npy.Dispose();
        _sidecar?.Dispose();
    }

    private static SafeFileHandle? TryOpenSidecar(string path)
    {
        try
        {
            return KindFolderFiles.OpenForRead(path);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }
}
