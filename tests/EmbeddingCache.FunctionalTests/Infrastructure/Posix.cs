using System.Runtime.InteropServices;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>The signals .NET's Process class cannot send: SIGTERM and SIGINT.</summary>
internal static partial class Posix
{
    private const int SigInt = 2;
    private const int SigTerm = 15;

    /// <summary>SIGTERM: a graceful stop.</summary>
    public static void Terminate(int pid) => Signal(pid, SigTerm);

    /// <summary>SIGINT: what Ctrl+C sends.</summary>
    public static void Interrupt(int pid) => Signal(pid, SigInt);

    private static void Signal(int pid, int signal)
    {
        if (kill(pid, signal) != 0) throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);
}
