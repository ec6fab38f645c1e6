using System.Diagnostics.CodeAnalysis;

namespace EmbeddingCache.Storage;

/// <summary>
/// The one place that knows which I/O errors mean "disk full", and the cold throw paths of the storage
/// engine (kept out of line so hot methods stay small).
/// </summary>
internal static class DiskErrors
{
    private const int NoSpaceErrno = 28;           // ENOSPC
    private const int QuotaExceededErrno = 122;    // EDQUOT on Linux
    private const int ReadOnlyFilesystemErrno = 30; // EROFS
    private const int WindowsDiskFull = 0x70;      // ERROR_DISK_FULL
    private const int WindowsHandleDiskFull = 0x27; // ERROR_HANDLE_DISK_FULL

    /// <summary>
    /// True when <paramref name="exception"/> reports a full disk or exhausted quota. .NET on Unix puts the
    /// raw errno in <see cref="Exception.HResult"/>; on Windows it is an HRESULT wrapping the Win32 code.
    /// </summary>
    public static bool IsDiskFull(IOException exception) =>
        exception is StorageFullException || IsDiskFullCode(exception.HResult) || IsDiskFullCode(exception.HResult & 0xFFFF);

    /// <summary>
    /// True when <paramref name="exception"/> says the place cannot be written at all (a read-only filesystem, no
    /// permission), as opposed to a passing condition such as another process holding a lock.
    /// </summary>
    public static bool IsNotWritable(Exception exception) => exception switch
    {
        UnauthorizedAccessException => true,
        IOException io => !OperatingSystem.IsWindows() && io.HResult == ReadOnlyFilesystemErrno,
        _ => false,
    };

    /// <summary>Turns a disk-full <see cref="IOException"/> into <see cref="StorageFullException"/>; others pass through.</summary>
    public static Exception Classify(Exception exception, string what) => exception switch
    {
        StorageFullException => exception,
        IOException io when IsDiskFull(io) => new StorageFullException($"The disk is full while {what}. Free space and retry.", io),
        _ => exception,
    };

    [DoesNotReturn]
    public static void ThrowForErrno(int errno, string operation, string path)
    {
        var message = $"{operation} failed on '{Path.GetFileName(path)}' (errno {errno}).";
        if (IsDiskFullCode(errno))
        {
            throw new StorageFullException(message + " The disk is full.");
        }

        throw new IOException(message, errno);
    }

    [DoesNotReturn]
    public static void ThrowDisposed(string what) => throw new ObjectDisposedException(what);

    [DoesNotReturn]
    public static void ThrowDestinationTooSmall(string parameter, long needed, long actual) =>
        throw new ArgumentException($"The buffer holds {actual} elements; {needed} are needed.", parameter);

    private static bool IsDiskFullCode(int code) => OperatingSystem.IsWindows()
        ? code is WindowsDiskFull or WindowsHandleDiskFull
        : code is NoSpaceErrno or QuotaExceededErrno;
}
