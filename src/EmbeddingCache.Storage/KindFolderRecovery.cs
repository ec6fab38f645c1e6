using System.Buffers;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace EmbeddingCache.Storage;

/// <summary>
/// Brings a kind folder back to a consistent state on open (invariants N2 and N3) and rebuilds its index
/// from the sidecars alone, never reading vector bytes. A segment keeps
/// min(header count, complete sidecar records, rows that fit in the file) rows; its header and sidecar
/// are trimmed to that. Anything this store did not write, or cannot read, is quarantined.
/// </summary>
internal static class KindFolderRecovery
{
    public static RecoveredKind Recover(string modelDirectory, string model, VectorKind kind, NpyLayout layout, StorageOptions options, ILogger logger)
    {
        string kindName = kind.Name();
        string directory = Path.Combine(modelDirectory, kindName);
        Directory.CreateDirectory(directory);
        SortedDictionary<int, string> npyFiles = SortEntries(modelDirectory, model, kindName, directory, logger);

        // Headers first (one small read each): bad ones are quarantined, and the row total sizes the index once.
        var candidates = new List<Candidate>();
        long expectedRows = 0;
        int nextNumber = 0;
        foreach ((int number, string npyPath) in npyFiles)
        {
            nextNumber = number + 1;
            Candidate? candidate = ReadHeader(number, npyPath, Path.Combine(directory, Segment.SidecarName(number)), layout, out string? problem);
            if (candidate is null)
            {
                QuarantineSegment(modelDirectory, model, kindName, npyPath, problem!, logger);
                continue;
            }

            candidates.Add(candidate);
            expectedRows += candidate.Limit;
        }

        int longestSegment = candidates.Count == 0 ? 0 : candidates.Max(c => c.Limit);
        var recovered = new RecoveredKind(directory, RowAddressing.ForSegmentRows(Math.Max(options.SegmentRows, longestSegment))) { NextNumber = nextNumber };
        if (candidates.Count > recovered.Addressing.MaxSegments)
        {
            throw new IOException($"{model}/{kindName} holds {candidates.Count} segments; its index addresses at most {recovered.Addressing.MaxSegments} at this segment size");
        }

        // Sidecars are parsed and their ids hashed on worker threads, a few segments ahead of the one entering
        // the index: parsing overlaps indexing. Rows enter the index in segment order so the newest write of a key
        // or id wins.
        var kept = new List<Candidate>();
        long rowsBefore = 0;
        int lookahead = Math.Max(1, Environment.ProcessorCount);
        var parsed = new Task[candidates.Count];
        for (int i = 0; i < Math.Min(lookahead, candidates.Count); i++)
        {
            parsed[i] = Task.Run(candidates[i].ParseSidecar);
        }

        for (int i = 0; i < candidates.Count; i++)
        {
            parsed[i].GetAwaiter().GetResult();
            if (i + lookahead < candidates.Count)
            {
                parsed[i + lookahead] = Task.Run(candidates[i + lookahead].ParseSidecar);
            }

            Candidate candidate = candidates[i];
            long rowsFromHere = expectedRows - rowsBefore;
            rowsBefore += candidate.Limit;
            if (candidate.Problem is not null)
            {
                QuarantineSegment(modelDirectory, model, kindName, candidate.NpyPath, candidate.Problem, logger);
                continue;
            }

            candidate.TrimTail(layout, model, kindName, logger);
            // A cache usually keys every row from its first keyed segment on (by text, by id, or both): size each
            // index once, when its first keys come, for every row from there on.
            SizeOnFirstKeys(recovered.Keys, candidate.KeyRows, rowsFromHere);
            SizeOnFirstKeys(recovered.Ids, candidate.IdRows, rowsFromHere);

            candidate.AddToIndex(kept.Count, recovered);
            kept.Add(candidate);
        }

        bool sync = options.Durability == DurabilityMode.GroupCommit;
        for (int i = 0; i < kept.Count; i++)
        {
            Candidate segment = kept[i];
            bool last = i == kept.Count - 1;
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

    private static void SizeOnFirstKeys(KeyIndex index, int keysInSegment, long rowsFromHere)
    {
        if (index.Count == 0 && keysInSegment > 0)
        {
            index.EnsureCapacity((int)Math.Min(rowsFromHere, int.MaxValue / 2));
        }
    }

    /// <summary>Sets aside what the store did not write and deletes interrupted atomic writes; returns the segments by number.</summary>
    private static SortedDictionary<int, string> SortEntries(string modelDirectory, string model, string kindName, string directory, ILogger logger)
    {
        KindFolderEntries entries = KindFolderFiles.Scan(directory);
        foreach (string folder in entries.Folders)
        {
            Quarantine.Move(modelDirectory, model, kindName, folder, "a folder inside a kind folder", logger);
        }

        foreach (string temporary in entries.Temporaries)
        {
            File.Delete(temporary); // an interrupted manifest write or segment creation; never committed data
            StorageLog.TemporaryFileDeleted(logger, model, $"{kindName}/{Path.GetFileName(temporary)}");
        }

        if (entries.Manifest is { } manifest && !CacheManifest.IsReadableJson(manifest))
        {
            Quarantine.Move(modelDirectory, model, kindName, manifest, "manifest is not JSON; it is rewritten from the segments", logger);
        }

        foreach (string foreign in entries.Foreign)
        {
            Quarantine.Move(modelDirectory, model, kindName, foreign, "not a file this store writes", logger);
        }

        foreach (string sidecar in entries.SidecarsWithoutSegment)
        {
            Quarantine.Move(modelDirectory, model, kindName, sidecar, "sidecar without its .npy", logger);
        }

        return entries.Segments;
    }

    private static Candidate? ReadHeader(int number, string npyPath, string sidecarPath, NpyLayout layout, out string? problem)
    {
        using SafeFileHandle npy = KindFolderFiles.OpenForRead(npyPath);
        SegmentHeader header = KindFolderFiles.ReadHeader(npy, layout);
        problem = header.Problem;
        return header.Count is { } count
            ? new Candidate(number, npyPath, File.Exists(sidecarPath) ? sidecarPath : null, count, header.FittingRows, header.FileLength)
            : null;
    }

    private static void QuarantineSegment(string modelDirectory, string model, string kindName, string npyPath, string problem, ILogger logger)
    {
        Quarantine.Move(modelDirectory, model, kindName, npyPath, problem, logger);
        string sidecarPath = Path.ChangeExtension(npyPath, null) + KeySidecar.Suffix;
        if (File.Exists(sidecarPath))
        {
            Quarantine.Move(modelDirectory, model, kindName, sidecarPath, "sidecar of a quarantined segment", logger);
        }
    }

    private static void ResizeIfNeeded(Candidate segment, long length, bool sync)
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

    /// <summary>One segment on its way through recovery.</summary>
    private sealed class Candidate(int number, string npyPath, string? sidecarPath, int headerRows, long fittingRows, long fileLength)
    {
        private ContentKey?[] _keys = [];
        private ContentKey?[] _idKeys = [];
        private long _sidecarLength;

        public int Number { get; } = number;

        public string NpyPath { get; } = npyPath;

        public long FileLength { get; } = fileLength;

        /// <summary>Most rows the segment can keep; a damaged count must not size buffers.</summary>
        public int Limit { get; } = (int)Math.Max(0, Math.Min(headerRows, fittingRows));

        public int Rows { get; private set; }

        public long SidecarBytes { get; private set; }

        public int KeyRows { get; private set; }

        public int IdRows { get; private set; }

        public string? Problem { get; private set; }

        public void ParseSidecar()
        {
            // Pooled buffers: a fresh multi-megabyte array per segment kept the GC busy during open.
            byte[] sidecar = [];
            int sidecarLength = 0;
            if (sidecarPath is not null)
            {
                using SafeFileHandle handle = KindFolderFiles.OpenForRead(sidecarPath);
                sidecarLength = checked((int)RandomAccess.GetLength(handle));
                sidecar = ArrayPool<byte>.Shared.Rent(sidecarLength);
                sidecarLength = RandomAccess.Read(handle, sidecar.AsSpan(0, sidecarLength), 0);
            }

            try
            {
                _sidecarLength = sidecarLength;
                _keys = ArrayPool<ContentKey?>.Shared.Rent(Limit);
                _idKeys = ArrayPool<ContentKey?>.Shared.Rent(Limit);
                KeySidecar.Stop stop = KeySidecar.Read(sidecar.AsSpan(0, sidecarLength), Limit, _keys, _idKeys, out int records, out long consumed);
                if (stop == KeySidecar.Stop.Invalid && records < Limit)
                {
                    Problem = $"sidecar record {records} is not a [key, id] record (the header counts {headerRows} rows)";
                    ReturnKeys();
                    return;
                }

                Rows = records;
                SidecarBytes = consumed;
                KeyRows = CountPresent(_keys, records);
                IdRows = CountPresent(_idKeys, records);
            }
            finally
            {
                if (sidecar.Length > 0)
                {
                    ArrayPool<byte>.Shared.Return(sidecar);
                }
            }
        }

        /// <summary>Lowers the header count and cuts the sidecar to the rows kept (a torn or uncommitted tail).</summary>
        public void TrimTail(NpyLayout layout, string model, string kindName, ILogger logger)
        {
            if (Rows == headerRows && _sidecarLength == SidecarBytes)
            {
                return;
            }

            if (Rows != headerRows)
            {
                using SafeFileHandle npy = AppendableSegment.OpenForWrite(NpyPath, FileMode.Open);
                byte[] word = new byte[NpyLayout.CountWidth];
                NpyLayout.FormatCount(word, Rows);
                RandomAccess.Write(npy, word, layout.CountOffset);
                NativeFile.SyncData(npy, NpyPath);
            }

            if (_sidecarLength != SidecarBytes && sidecarPath is not null)
            {
                using SafeFileHandle handle = AppendableSegment.OpenForWrite(sidecarPath, FileMode.Open);
                RandomAccess.SetLength(handle, SidecarBytes);
                NativeFile.SyncData(handle, sidecarPath);
            }

            StorageLog.SegmentTailTruncated(logger, model, kindName, Path.GetFileName(NpyPath), headerRows, fittingRows, Rows, _sidecarLength - SidecarBytes);
        }

        public void AddToIndex(int slot, RecoveredKind recovered)
        {
            // The two indexes are independent tables, each filled in row order: fill them side by side.
            if (KeyRows > 0 && IdRows > 0)
            {
                Parallel.Invoke(() => Add(slot, _keys, recovered.Keys, recovered.Addressing), () => Add(slot, _idKeys, recovered.Ids, recovered.Addressing));
            }
            else if (KeyRows > 0)
            {
                Add(slot, _keys, recovered.Keys, recovered.Addressing);
            }
            else if (IdRows > 0)
            {
                Add(slot, _idKeys, recovered.Ids, recovered.Addressing);
            }

            ReturnKeys();
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static int CountPresent(ContentKey?[] keys, int rows)
        {
            int count = 0;
            for (int row = 0; row < rows; row++)
            {
                count += keys[row].HasValue ? 1 : 0;
            }

            return count;
        }

        private void ReturnKeys()
        {
            if (_keys.Length > 0)
            {
                ArrayPool<ContentKey?>.Shared.Return(_keys);
                ArrayPool<ContentKey?>.Shared.Return(_idKeys);
            }

            _keys = [];
            _idKeys = [];
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // one long loop per segment on open
        private void Add(int slot, ContentKey?[] keys, KeyIndex index, RowAddressing addressing)
        {
            // Keys are random, so nearly every insert misses the cache: start loading the slot a few rows ahead.
            const int PrefetchDistance = 16;
            for (int row = 0; row < Rows; row++)
            {
                if (row + PrefetchDistance < Rows && keys[row + PrefetchDistance] is { } ahead)
                {
                    index.Prefetch(ahead);
                }

                if (keys[row] is { } key)
                {
                    index.Set(key, addressing.Pack(slot, row));
                }
            }
        }
    }
}

/// <summary>What recovery found in a kind folder: its segments in order and the index over them.</summary>
internal sealed class RecoveredKind(string directory, RowAddressing addressing)
{
    public string Directory { get; } = directory;

    public RowAddressing Addressing { get; } = addressing;

    public List<Segment> Segments { get; } = [];

    public AppendableSegment? Appendable { get; set; }

    public KeyIndex Keys { get; } = new();

    public KeyIndex Ids { get; } = new();

    public int NextNumber { get; set; }
}
