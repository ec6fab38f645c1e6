using System.Globalization;

namespace EmbeddingCache.Benchmarks.Infrastructure;

/// <summary>
/// A process's resident memory from <c>/proc/PID/status</c>, in bytes: all of it (VmRSS), the anonymous part
/// (RssAnon: heaps, indexes, buffers) and the file-backed part (RssFile: mapped files such as .npy segments, whose
/// pages belong to the page cache and are shared).
/// </summary>
public readonly record struct ProcessMemory(long Resident, long Anonymous, long FileBacked)
{
    /// <summary>The figures of process <paramref name="processId"/>, or null where /proc cannot be read.</summary>
    public static ProcessMemory? Of(int processId)
    {
        try
        {
            long resident = 0, anonymous = 0, file = 0;
            foreach (var line in File.ReadLines($"/proc/{processId}/status"))
            {
                var parts = line.Split(':', 2);
                if (parts.Length != 2)
                {
                    continue;
                }

                var kib = parts[1].Trim().Split(' ')[0];
                switch (parts[0])
                {
                    case "VmRSS":
                        resident = long.Parse(kib, CultureInfo.InvariantCulture) * 1024;
                        break;
                    case "RssAnon":
                        anonymous = long.Parse(kib, CultureInfo.InvariantCulture) * 1024;
                        break;
                    case "RssFile":
                        file = long.Parse(kib, CultureInfo.InvariantCulture) * 1024;
                        break;
                }
            }

            return new ProcessMemory(resident, anonymous, file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }
}
