using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace EmbeddingCache.Storage;

/// <summary>
/// The few POSIX calls .NET does not expose: fdatasync, fsync of a directory, flock, and statx's file identity. Every errno they
/// report goes through <see cref="DiskErrors"/>, so a full disk is always a <see cref="StorageFullException"/>.
/// </summary>
internal static partial class NativeFile
{
    private const int OpenReadOnly = 0;
    private const int OpenDirectory = 0x10000; // O_DIRECTORY on Linux x64 and arm64
    private const int LockExclusive = 2;
    private const int LockNonBlocking = 4;
    private const int WouldBlock = 11; // EWOULDBLOCK/EAGAIN on Linux
    private const int Interrupted = 4; // EINTR
    private const int AtCurrentDirectory = -100; // AT_FDCWD
    private const uint StatxInode = 0x100; // STATX_INO
    private const uint StatxBirthTime = 0x800; // STATX_BTIME

    /// <summary>Flushes file data (and the size, if it changed) to disk.</summary>
    public static void SyncData(SafeFileHandle handle, string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            RandomAccess.FlushToDisk(handle);
            return;
        }

        var added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            var fd = (int)handle.DangerousGetHandle();
            while (fdatasync(fd) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno != Interrupted)
                {
                    DiskErrors.ThrowForErrno(errno, "fdatasync", path);
                }
            }
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>Makes renames, creations and deletions inside <paramref name="directory"/> durable.</summary>
    public static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // Windows and macOS have no portable directory fsync; NTFS journals metadata itself.
        }

        var fd = open(directory, OpenReadOnly | OpenDirectory);
        if (fd < 0)
        {
            DiskErrors.ThrowForErrno(Marshal.GetLastPInvokeError(), "open directory", directory);
        }

        try
        {
            while (fsync(fd) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno != Interrupted)
                {
                    DiskErrors.ThrowForErrno(errno, "fsync directory", directory);
                }
            }
        }
        finally
        {
            _ = close(fd);
        }
    }

    /// <summary>
    /// Takes an exclusive flock without waiting. Returns false if another open file description holds it.
    /// The kernel drops the lock when the holder dies, so a killed server never blocks a restart.
    /// </summary>
    public static bool TryLockExclusive(SafeFileHandle handle)
    {
        if (OperatingSystem.IsWindows())
        {
            return true; // FileShare.None already excludes other openers on Windows.
        }

        var fd = (int)handle.DangerousGetHandle();
        while (flock(fd, LockExclusive | LockNonBlocking) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == WouldBlock)
            {
                return false;
            }

            if (errno != Interrupted)
            {
                DiskErrors.ThrowForErrno(errno, "flock", "artifacts lock");
            }
        }

        return true;
    }

    /// <summary>
    /// Which file or folder <paramref name="path"/> is: device, inode and birth time, which tell a folder from one that
    /// later took its name (an invalidation's swap), even if the inode number is reused. Null where unknown (not Linux,
    /// or no such path).
    /// </summary>
    public static unsafe FileIdentity? Identity(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        // struct statx has one layout on every Linux architecture: 256 bytes, the fields read below at fixed offsets.
        byte* status = stackalloc byte[256];
        if (statx(AtCurrentDirectory, path, 0, StatxInode | StatxBirthTime, status) != 0)
        {
            return null;
        }

        return new FileIdentity(*(uint*)(status + 136), *(uint*)(status + 140), *(ulong*)(status + 32), *(long*)(status + 80), *(uint*)(status + 88));
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fdatasync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(int fd);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int flock(int fd, int operation);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statx(int directory, string path, int flags, uint mask, byte* status);
}

/// <summary>A file's identity as <see cref="NativeFile.Identity"/> reads it (birth time zero where the file system keeps none).</summary>
internal readonly record struct FileIdentity(uint DeviceMajor, uint DeviceMinor, ulong Inode, long BirthSeconds, uint BirthNanoseconds);
