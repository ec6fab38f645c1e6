using System.IO.MemoryMappedFiles;
using System.Runtime.Intrinsics.X86;

namespace EmbeddingCache.Storage;

/// <summary>
/// A read-only memory map of a whole segment file. The pointer is acquired once here and released
/// exactly once in <see cref="Dispose"/>; callers get spans, never the pointer. The owning
/// <see cref="StoreGeneration"/> disposes a mapping only once it is retired and no Gather can still be reading it.
/// </summary>
internal sealed unsafe class SegmentMapping : IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _start;
    private bool _disposed;

    private SegmentMapping(MemoryMappedFile file, MemoryMappedViewAccessor view, long length)
    {
        _file = file;
        _view = view;
        Length = length;
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _start = pointer + view.PointerOffset;
    }

    /// <summary>Bytes mapped: the file length when the map was made.</summary>
    public long Length { get; }

    public static SegmentMapping Open(string path)
    {
        // Our own handle with permissive sharing: the writer keeps the file open, and invalidation may
        // rename or delete it while it is still mapped (Linux allows both).
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        MemoryMappedFile? file = null;
        try
        {
            var length = stream.Length;
            file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            MemoryMappedViewAccessor view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new SegmentMapping(file, view, length);
        }
        catch
        {
            if (file is null)
            {
                stream.Dispose();
            }
            else
            {
                file.Dispose();
            }

            throw;
        }
    }

    /// <summary>
    /// Maps the file open as <paramref name="handle"/>, which the caller keeps open and owns: a follower maps exactly the
    /// file whose header and sidecar it reads, whatever is renamed over its name meanwhile.
    /// </summary>
    public static SegmentMapping Open(Microsoft.Win32.SafeHandles.SafeFileHandle handle)
    {
        var length = RandomAccess.GetLength(handle);
        var file = MemoryMappedFile.CreateFromFile(handle, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
        try
        {
            MemoryMappedViewAccessor view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new SegmentMapping(file, view, length);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The bytes at <paramref name="offset"/>; the caller keeps within committed rows.</summary>
    public ReadOnlySpan<byte> Slice(long offset, int length)
    {
        if ((ulong)offset + (ulong)length > (ulong)Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), "Read past the end of a segment mapping.");
        }

        return new ReadOnlySpan<byte>(_start + offset, length);
    }

    /// <summary>
    /// Prefetches the first and last cache line of a range: that starts the page walks of both pages it may span and
    /// the loads, and the hardware prefetcher streams the lines between. A hint only: nothing is read or checked.
    /// </summary>
    public void Prefetch(long offset, int length)
    {
        if (Sse.IsSupported && (ulong)offset + (ulong)length <= (ulong)Length && length > 0)
        {
            Sse.Prefetch0(_start + offset);
            Sse.Prefetch0(_start + offset + length - 1);
        }
    }

    /// <summary>
    /// Reads one byte of every 4 KiB page of the range, so that the page is in the page cache and mapped here before
    /// a request needs it (a first touch costs a fault, and a disk read when the page is cold). Returns the bytes'
    /// sum so that the reads cannot be optimised away.
    /// </summary>
    public int Touch(long offset, int length)
    {
        ReadOnlySpan<byte> bytes = Slice(offset, length);
        var sum = 0;
        for (var i = 0; i < bytes.Length; i += PageSize)
        {
            sum += bytes[i];
        }

        return sum;
    }

    private const int PageSize = 4096;

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}
