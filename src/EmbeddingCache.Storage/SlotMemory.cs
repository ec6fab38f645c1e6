using System.Runtime.InteropServices;

namespace EmbeddingCache.Storage;

/// <summary>
/// Zeroed native memory for a <see cref="KeyIndex"/> table, freed by the finalizer once no reader holds the owner.
/// Large tables are anonymous mappings advised to use 2 MiB pages: the index is written and read at random, and
/// on 4 KiB pages every first write is a page fault and every lookup a TLB miss, which make filling the index of
/// a large cache most of its open (benchmarks/results/lab-notes.md).
/// Small tables come from the native heap.
/// </summary>
internal sealed unsafe partial class SlotMemory
{
    private const nuint HugePageBytes = 2 * 1024 * 1024;
    private const int ProtectReadWrite = 0x1 | 0x2; // PROT_READ | PROT_WRITE
    private const int MapPrivateAnonymous = 0x02 | 0x20; // MAP_PRIVATE | MAP_ANONYMOUS on Linux
    private const int AdviseHugePage = 14; // MADV_HUGEPAGE

    private readonly bool _mapped;

    public SlotMemory(nuint bytes)
    {
        Bytes = Math.Max(bytes, 1);
        if (OperatingSystem.IsLinux() && Bytes >= HugePageBytes)
        {
            var address = mmap(null, Bytes, ProtectReadWrite, MapPrivateAnonymous, -1, 0);
            if (address == (void*)-1)
            {
                throw new OutOfMemoryException($"cannot map {Bytes} bytes for a key index (errno {Marshal.GetLastPInvokeError()})");
            }

            _ = madvise(address, Bytes, AdviseHugePage); // a hint: without transparent huge pages the table still works
            Pointer = address;
            _mapped = true;
        }
        else
        {
            Pointer = NativeMemory.AllocZeroed(Bytes);
        }

        GC.AddMemoryPressure((long)Bytes);
    }

    ~SlotMemory()
    {
        if (_mapped)
        {
            _ = munmap(Pointer, Bytes);
        }
        else
        {
            NativeMemory.Free(Pointer);
        }

        GC.RemoveMemoryPressure((long)Bytes);
    }

    /// <summary>Start of the zeroed memory; valid while this object is reachable.</summary>
    public void* Pointer { get; }

    public nuint Bytes { get; }

    [LibraryImport("libc", SetLastError = true)]
    private static partial void* mmap(void* address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc")]
    private static partial int madvise(void* address, nuint length, int advice);

    [LibraryImport("libc")]
    private static partial int munmap(void* address, nuint length);
}
