using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;

namespace EmbeddingCache.Storage;

/// <summary>
/// How the files of a kind folder are named and how a segment's header is checked: the one place both readers of
/// the format use, recovery (which repairs what it finds) and <see cref="KindFolderReader"/> (which only reports it).
/// </summary>
internal static partial class KindFolderFiles
{
    /// <summary>Sorts the entries of a kind folder by what they are; nothing is opened or changed.</summary>
    public static KindFolderEntries Scan(string directory)
    {
        var entries = new KindFolderEntries();
        foreach (string entry in Directory.EnumerateFileSystemEntries(directory))
        {
            string name = Path.GetFileName(entry);
            if (Directory.Exists(entry))
            {
                entries.Folders.Add(entry);
            }
            else if (name.EndsWith(AtomicFile.TemporarySuffix, StringComparison.Ordinal))
            {
                entries.Temporaries.Add(entry);
            }
            else if (name == CacheManifest.FileName)
            {
                entries.Manifest = entry;
            }
            else if (SegmentFilePattern().Match(name) is { Success: true } match)
            {
                int number = int.Parse(match.Groups["number"].ValueSpan, provider: null);
                if (match.Groups["sidecar"].Success)
                {
                    entries.Sidecars[number] = entry;
                }
                else
                {
                    entries.Segments[number] = entry;
                }
            }
            else
            {
                entries.Foreign.Add(entry);
            }
        }

        return entries;
    }

    /// <summary>Opens a segment or sidecar for reading next to its writer, which may extend, rename or delete it meanwhile.</summary>
    public static SafeFileHandle OpenForRead(string path) =>
        File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);

    /// <summary>Reads the header of the segment open as <paramref name="npy"/> and checks it is the one <paramref name="layout"/> writes.</summary>
    public static SegmentHeader ReadHeader(SafeFileHandle npy, NpyLayout layout)
    {
        long length = RandomAccess.GetLength(npy);
        byte[] header = new byte[Math.Min(length, layout.HeaderLength)];
        int read = RandomAccess.Read(npy, header, 0);
        long fitting = Math.Max(0, length - layout.HeaderLength) / layout.RowBytes;
        if (layout.TryReadCount(header.AsSpan(0, read)) is not { } count)
        {
            string problem = $"{NpyLayout.Describe(header.AsSpan(0, read))} is not the expected '{layout.DType.NpyDescr()}' (rows, {layout.Dims}) header";
            return new SegmentHeader(null, fitting, length, problem);
        }

        return new SegmentHeader(count, fitting, length, null);
    }

    /// <summary>Opens a sidecar for reading; null when it is absent (a segment created an instant before its sidecar).</summary>
    public static SafeFileHandle? OpenSidecar(string path)
    {
        try
        {
            return OpenForRead(path);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Reads the whole file open as <paramref name="handle"/>, as long as it is now.</summary>
    public static byte[] ReadAll(SafeFileHandle handle)
    {
        byte[] content = new byte[checked((int)RandomAccess.GetLength(handle))];
        int read = RandomAccess.Read(handle, content, 0);
        return read == content.Length ? content : content[..read];
    }

    [GeneratedRegex(@"^(?<number>[0-9]{6})(?:\.npy|(?<sidecar>\.keys\.msgpack))$", RegexOptions.CultureInvariant)]
    private static partial Regex SegmentFilePattern();
}

/// <summary>The entries of a kind folder, by what they are.</summary>
internal sealed class KindFolderEntries
{
    /// <summary>Segment <c>.npy</c> files by number, in order.</summary>
    public SortedDictionary<int, string> Segments { get; } = [];

    /// <summary>Sidecars by segment number.</summary>
    public Dictionary<int, string> Sidecars { get; } = [];

    /// <summary>The kind folder's own (informative) manifest, if present.</summary>
    public string? Manifest { get; set; }

    /// <summary>Files being written atomically (never committed data).</summary>
    public List<string> Temporaries { get; } = [];

    /// <summary>Sub-folders: this store never makes one inside a kind folder.</summary>
    public List<string> Folders { get; } = [];

    /// <summary>Files of any other name: not written by this store.</summary>
    public List<string> Foreign { get; } = [];

    /// <summary>Sidecars whose segment file is missing.</summary>
    public IEnumerable<string> SidecarsWithoutSegment => Sidecars.Where(pair => !Segments.ContainsKey(pair.Key)).Select(pair => pair.Value);
}

/// <summary>
/// A segment header as read: <paramref name="Count"/> is the committed row count it states, null when the header is not
/// this store's for the expected dims and dtype (then <paramref name="Problem"/> says what it is).
/// <paramref name="FittingRows"/> is how many whole rows the file's length holds.
/// </summary>
internal readonly record struct SegmentHeader(int? Count, long FittingRows, long FileLength, string? Problem);
