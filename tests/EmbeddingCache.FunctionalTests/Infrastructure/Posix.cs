using System.Runtime.InteropServices;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>The one signal .NET's Process class cannot send: SIGTERM, for a graceful stop.</summary>
internal static partial class Posix
{
    private const int SigTerm = 15;

    public static void Terminate(int pid)
    {
        if (kill(pid, SigTerm) != 0) throw new InvalidOperationException($"kill({pid}, SIGTERM) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);
}
