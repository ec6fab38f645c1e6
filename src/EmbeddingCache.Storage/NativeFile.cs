using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace EmbeddingCache.Storage;

/// <summary>
/// The few POSIX calls .NET does not expose: fdatasync, fsync of a directory, and flock. Every errno they
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
}
