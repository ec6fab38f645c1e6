using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace EmbeddingCache.Storage;

/// <summary>
/// The few POSIX calls .NET does not expose: fdatasync, fsync of a directory, flock, and a file's identity. Every errno they
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

    /// <summary>
    /// The device and inode of the file at <paramref name="path"/> (Linux; null elsewhere, or when there is no file), to
    /// tell a file replaced under its name (a copy renamed over it) from the one a reader holds open.
    /// </summary>
    public static unsafe FileIdentity? IdentityOf(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        byte* status = stackalloc byte[StatBufferBytes];
        return stat(path, status) == 0 ? ReadIdentity(status) : null;
    }

    /// <summary>As <see cref="IdentityOf(string)"/>, for the file open as <paramref name="handle"/>.</summary>
    public static unsafe FileIdentity? IdentityOf(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        byte* status = stackalloc byte[StatBufferBytes];
        var added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            return fstat((int)handle.DangerousGetHandle(), status) == 0 ? ReadIdentity(status) : null;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    // struct stat begins with st_dev and st_ino, 8 bytes each, on Linux x64 and arm64; the whole struct is under 256 bytes.
    private const int StatBufferBytes = 256;

    private static unsafe FileIdentity ReadIdentity(byte* status) => new(((ulong*)status)[0], ((ulong*)status)[1]);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int stat(string path, byte* status);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int fstat(int fd, byte* status);

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

/// <summary>A file's device and inode: two names with the same identity are the same file.</summary>
internal readonly record struct FileIdentity(ulong Device, ulong Inode);
