using System.Buffers;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace EmbeddingCache.Storage;

/// <summary>
/// Brings a kind folder back to a consistent state on open (invariants N2 and N3) and rebuilds its index
/// from the sidecars alone, never reading vector bytes. A segment keeps
/// min(header count, complete sidecar records, rows that fit in the file) rows; its header and sidecar
/// are trimmed to that. Anything this store did not write, or cannot read, is quarantined.
/// </summary>
internal static partial class KindFolderRecovery
{
    public static RecoveredKind Recover(string modelDirectory, string model, VectorKind kind, NpyLayout layout, StorageOptions options, ILogger logger)
    {
        string kindName = CacheManifest.KindFolderName(kind);
        string directory = Path.Combine(modelDirectory, kindName);
        Directory.CreateDirectory(directory);

        var npyFiles = new SortedDictionary<int, string>();
        var sidecars = new Dictionary<int, string>();
        foreach (string entry in Directory.EnumerateFileSystemEntries(directory))
        {
            string name = Path.GetFileName(entry);
            if (Directory.Exists(entry))
            {
                Quarantine.Move(modelDirectory, model, kindName, entry, "a folder inside a kind folder", logger);
            }
            else if (name.EndsWith(AtomicFile.TemporarySuffix, StringComparison.Ordinal))
            {
                File.Delete(entry); // an interrupted manifest write or segment creation; never committed data
                StorageLog.TemporaryFileDeleted(logger, model, $"{kindName}/{name}");
            }
            else if (name == CacheManifest.FileName)
            {
                if (!CacheManifest.IsReadableJson(entry))
                {
                    Quarantine.Move(modelDirectory, model, kindName, entry, "manifest is not JSON; it is rewritten from the segments", logger);
                }
            }
            else if (SegmentFilePattern().Match(name) is { Success: true } match)
            {
                int number = int.Parse(match.Groups["number"].ValueSpan, provider: null);
                if (match.Groups["sidecar"].Success)
                {
                    sidecars[number] = entry;
                }
                else
                {
                    npyFiles[number] = entry;
                }
            }
            else
            {
                Quarantine.Move(modelDirectory, model, kindName, entry, "not a file this store writes", logger);
            }
        }

        foreach ((int number, string path) in sidecars)
        {
            if (!npyFiles.ContainsKey(number))
            {
                Quarantine.Move(modelDirectory, model, kindName, path, "sidecar without its .npy", logger);
            }
        }

        var recovered = new RecoveredKind(directory);
        var checkedSegments = new List<CheckedSegment>();
        int nextNumber = 0;
        foreach ((int number, string npyPath) in npyFiles)
        {
            nextNumber = number + 1;
            sidecars.TryGetValue(number, out string? sidecarPath);
            CheckedSegment? segment = Check(model, kindName, number, npyPath, sidecarPath, layout, checkedSegments.Count, recovered, logger, out string? problem);
            if (segment is null)
            {
                Quarantine.Move(modelDirectory, model, kindName, npyPath, problem!, logger);
                if (sidecarPath is not null && File.Exists(sidecarPath))
                {
                    Quarantine.Move(modelDirectory, model, kindName, sidecarPath, "sidecar of a quarantined segment", logger);
                }

                continue;
            }

            checkedSegments.Add(segment);
        }

        recovered.NextNumber = nextNumber;
        bool sync = options.Durability == DurabilityMode.GroupCommit;
        for (int i = 0; i < checkedSegments.Count; i++)
        {
            CheckedSegment segment = checkedSegments[i];
            bool last = i == checkedSegments.Count - 1;
            if (last && segment.Rows < options.SegmentRows)
            {
                ResizeIfNeeded(segment, layout.FileLength(options.SegmentRows), sync);
                var appendable = AppendableSegment.Resume(directory, segment.Number, layout, options.SegmentRows, segment.Rows, segment.SidecarBytes, sync);
                recovered.Segments.Add(appendable);
                recovered.Appendable = appendable;
            }
            else
            {
                // A non-last segment longer than its rows was being sealed when the process died.
                ResizeIfNeeded(segment, layout.FileLength(segment.Rows), sync);
                recovered.Segments.Add(new SealedSegment(directory, segment.Number, layout, segment.Rows, segment.SidecarBytes));
            }
        }

        return recovered;
    }

    private static CheckedSegment? Check(
        string model,
        string kindName,
        int number,
        string npyPath,
        string? sidecarPath,
        NpyLayout layout,
        int slot,
        RecoveredKind recovered,
        ILogger logger,
        out string? problem)
    {
        problem = null;
        string fileName = Path.GetFileName(npyPath);
        using SafeFileHandle npy = AppendableSegment.OpenForWrite(npyPath, FileMode.Open);
        long length = RandomAccess.GetLength(npy);
        byte[] header = new byte[Math.Min(length, layout.HeaderLength)];
        int read = RandomAccess.Read(npy, header, 0);
        int? headerRows = layout.TryReadCount(header.AsSpan(0, read));
        if (headerRows is not { } count)
        {
            problem = $"{NpyLayout.Describe(header.AsSpan(0, read))} is not the expected '{NpyLayout.DescrOf(layout.DType)}' (rows, {layout.Dims}) header";
            return null;
        }

        long fitting = (length - layout.HeaderLength) / layout.RowBytes;
        byte[] sidecar = sidecarPath is null ? [] : File.ReadAllBytes(sidecarPath);
        ContentKey?[] keys = ArrayPool<ContentKey?>.Shared.Rent(Math.Max(count, 1));
        ContentKey?[] idKeys = ArrayPool<ContentKey?>.Shared.Rent(Math.Max(count, 1));
        try
        {
            KeySidecar.Stop stop = KeySidecar.Read(sidecar, count, keys, idKeys, out int records, out long consumed);
            if (stop == KeySidecar.Stop.Invalid && records < count)
            {
                problem = $"sidecar record {records} is not a [key, id] record (header counts {count} rows)";
                return null;
            }

            int rows = (int)Math.Min(Math.Min(count, records), fitting);
            recovered.Keys.EnsureCapacity(recovered.Keys.Count + rows);
            long sidecarBytes = consumed;
            if (rows < records)
            {
                // Fewer rows fit than records were read: keep the records of kept rows only.
                sidecarBytes = MeasureRecords(sidecar, rows);
            }

            if (rows != count)
            {
                byte[] word = new byte[NpyLayout.CountWidth];
                NpyLayout.FormatCount(word, rows);
                RandomAccess.Write(npy, word, layout.CountOffset);
                NativeFile.SyncData(npy, npyPath);
            }

            if (sidecar.Length != sidecarBytes && sidecarPath is not null)
            {
                using SafeFileHandle handle = AppendableSegment.OpenForWrite(sidecarPath, FileMode.Open);
                RandomAccess.SetLength(handle, sidecarBytes);
                NativeFile.SyncData(handle, sidecarPath);
            }

            if (rows != count || sidecar.Length != sidecarBytes)
            {
                StorageLog.SegmentTailTruncated(logger, model, kindName, fileName, count, records, fitting, rows);
            }

            for (int row = 0; row < rows; row++)
            {
                long location = RecoveredKind.Pack(slot, row);
                if (keys[row] is { } key)
                {
                    recovered.Keys.Set(key, location);
                }

                if (idKeys[row] is { } idKey)
                {
                    recovered.Ids.Set(idKey, location);
                }
            }

            return new CheckedSegment(number, npyPath, rows, sidecarBytes, length);
        }
        finally
        {
            ArrayPool<ContentKey?>.Shared.Return(keys);
            ArrayPool<ContentKey?>.Shared.Return(idKeys);
        }
    }

    private static long MeasureRecords(byte[] sidecar, int records)
    {
        var keys = new ContentKey?[records];
        var ids = new ContentKey?[records];
        KeySidecar.Read(sidecar, records, keys, ids, out _, out long consumed);
        return consumed;
    }

    private static void ResizeIfNeeded(CheckedSegment segment, long length, bool sync)
    {
        if (segment.FileLength == length)
        {
            return;
        }

        using SafeFileHandle handle = AppendableSegment.OpenForWrite(segment.NpyPath, FileMode.Open);
        RandomAccess.SetLength(handle, length);
        if (sync)
        {
            NativeFile.SyncData(handle, segment.NpyPath);
        }
    }

    [GeneratedRegex(@"^(?<number>[0-9]{6})(?:\.npy|(?<sidecar>\.keys\.msgpack))$", RegexOptions.CultureInvariant)]
    private static partial Regex SegmentFilePattern();

    private sealed record CheckedSegment(int Number, string NpyPath, int Rows, long SidecarBytes, long FileLength);
}

/// <summary>What recovery found in a kind folder: its segments in order and the index over them.</summary>
internal sealed class RecoveredKind(string directory)
{
    public string Directory { get; } = directory;

    public List<Segment> Segments { get; } = [];

    public AppendableSegment? Appendable { get; set; }

    public KeyIndex Keys { get; } = new();

    public KeyIndex Ids { get; } = new();

    public int NextNumber { get; set; }

    /// <summary>A row location: segment slot in the high 32 bits, row in the low 32.</summary>
    public static long Pack(int slot, int row) => ((long)slot << 32) | (uint)row;
}
