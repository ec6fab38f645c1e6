using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Win32.SafeHandles;

namespace EmbeddingCache.Storage;

/// <summary>One sidecar record: the content key of the row's tokenizer input and its id, either of which may be absent.</summary>
public readonly record struct SidecarRecord(ContentKey? Key, string? Id);

/// <summary>
/// One committed row: <paramref name="Segment"/> indexes <see cref="KindFolderReader.Segments"/> (not the file number),
/// <paramref name="Row"/> is the row within that segment.
/// </summary>
public readonly record struct StoredRow(int Segment, int Row, ContentKey? Key, string? Id);

/// <summary>
/// A committed segment as a <see cref="KindFolderReader"/> found it: its files, its committed rows and their sidecar
/// records, in row order.
/// </summary>
public sealed class KindSegment
{
    internal KindSegment(
        int number, string npyPath, string sidecarPath, SafeFileHandle npy, SafeFileHandle? sidecar, long sidecarBytes, bool isSealed, IReadOnlyList<SidecarRecord> records)
    {
        Number = number;
        NpyPath = npyPath;
        SidecarPath = sidecarPath;
        Npy = npy;
        Sidecar = sidecar;
        SidecarBytes = sidecarBytes;
        IsSealed = isSealed;
        Records = records;
    }

    /// <summary>The segment number, from its file name <c>NNNNNN.npy</c>.</summary>
    public int Number { get; }

    /// <summary>Full path of the vectors file.</summary>
    public string NpyPath { get; }

    /// <summary>Full path of the sidecar.</summary>
    public string SidecarPath { get; }

    /// <summary>Committed rows: the header's count when the reader opened the segment.</summary>
    public int Rows => Records.Count;

    /// <summary>The sidecar record of each committed row.</summary>
    public IReadOnlyList<SidecarRecord> Records { get; }

    /// <summary>True when the file held exactly its committed rows (a sealed segment), not a growing segment's reserve.</summary>
    public bool IsSealed { get; }

    /// <summary>The one handle every row of this segment is read through.</summary>
    internal SafeFileHandle Npy { get; }

    /// <summary>The handle the sidecar was read through (null: no sidecar, no rows), so a copy takes the very bytes parsed.</summary>
    internal SafeFileHandle? Sidecar { get; }

    /// <summary>Length of the committed records at the start of the sidecar.</summary>
    internal long SidecarBytes { get; }
}

/// <summary>
/// Reads the committed rows of one kind of one model's cache straight from its files, the way numpy does: no lock is
/// taken and nothing is changed, so it runs next to a live writer (invariant N1 keeps every file consistent while a
/// server appends). Opening reads the cache manifest, each segment's header and its sidecar; vectors are read on
/// demand, each segment through the one handle opened with it, so a segment renamed or deleted afterwards (an
/// invalidation) still reads as it was. A segment that cannot be trusted is left out and described in
/// <see cref="Problems"/>, not thrown: recovery would quarantine it on the writer's next open.
/// </summary>
/// <remarks>
/// What a reader shows is the state at <see cref="Open"/>; rows committed later need a new reader. Reading rows is
/// safe from several threads at once. A snapshot copies what it shows (<see cref="CopyCommitted"/>) and keeps the copy
/// only if <see cref="IsUnchanged"/> after: then every file it opened belonged to one generation of the kind.
/// </remarks>
public sealed class KindFolderReader : IDisposable
{
    private const int CopyChunkBytes = 1 << 20;
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private readonly string _manifestPath;
    private readonly CacheManifest _manifest;
    private readonly NpyLayout _layout;
    private readonly List<KindSegment> _segments = [];
    private readonly List<string> _problems = [];
    private readonly long? _generation;
    private readonly FileIdentity? _folderIdentity;

    private KindFolderReader(string model, VectorKind kind, string directory, string manifestPath, CacheManifest manifest)
    {
        Model = model;
        Kind = kind;
        Directory = directory;
        _manifestPath = manifestPath;
        _manifest = manifest;
        _layout = new NpyLayout(manifest.Dims, manifest.DType);
        // Read before the folder is listed: a file opened afterwards belongs to this generation if it is still the current one after.
        _generation = ReadGeneration(Path.Combine(directory, CacheManifest.FileName));
        _folderIdentity = NativeFile.IdentityOf(directory);
    }

    /// <summary>The model whose cache this is.</summary>
    public string Model { get; }

    /// <summary>The kind read.</summary>
    public VectorKind Kind { get; }

    /// <summary>The kind folder read.</summary>
    public string Directory { get; }

    /// <summary>Floats per row, from the cache manifest.</summary>
    public int Dims => _layout.Dims;

    /// <summary>Element type of the rows, from the cache manifest.</summary>
    public VectorDType DType => _layout.DType;

    /// <summary>numpy's name of <see cref="DType"/>: <c>&lt;f4</c> or <c>&lt;f2</c>.</summary>
    public string Descr => _layout.DType.NpyDescr();

    /// <summary>Bytes of one stored row.</summary>
    public int RowBytes => _layout.RowBytes;

    /// <summary>Fingerprint of the model that made the vectors, from the cache manifest (<c>""</c>: store-only).</summary>
    public string Fingerprint => _manifest.Fingerprint;

    /// <summary>The readable segments, in segment order (oldest first).</summary>
    public IReadOnlyList<KindSegment> Segments => _segments;

    /// <summary>What is wrong with the files, one line each, naming the file; empty when all is well.</summary>
    public IReadOnlyList<string> Problems => _problems;

    /// <summary>Committed rows over all readable segments, including rows superseded by newer writes.</summary>
    public long RowCount => _segments.Sum(s => (long)s.Rows);

    /// <summary>Opens <paramref name="kind"/> of the cache of <paramref name="model"/> under <paramref name="artifactsRoot"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="model"/> cannot be a model name.</exception>
    /// <exception cref="DirectoryNotFoundException">The model has no cache under the root.</exception>
    /// <exception cref="InvalidDataException">The cache manifest cannot be read; the message says why.</exception>
    public static KindFolderReader Open(string artifactsRoot, string model, VectorKind kind)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(artifactsRoot);
        if (!ArtifactsRoot.IsValidModelName(model))
        {
            throw new ArgumentException($"'{model}' is not a model name.", nameof(model));
        }

        string modelDirectory = Path.Combine(artifactsRoot, ArtifactsRoot.EmbeddingsFolderName, model);
        string manifestPath = Path.Combine(modelDirectory, CacheManifest.FileName);
        string? problem = null;
        CacheManifest? manifest = File.Exists(manifestPath) ? CacheManifest.TryRead(manifestPath, model, out problem) : null;
        if (problem is not null)
        {
            throw new InvalidDataException($"{manifestPath} cannot be read: {problem}");
        }

        if (manifest is null)
        {
            throw new DirectoryNotFoundException($"no cache of '{model}': {manifestPath} does not exist");
        }

        var reader = new KindFolderReader(model, kind, Path.Combine(modelDirectory, kind.Name()), manifestPath, manifest);
        try
        {
            foreach ((int number, string npyPath) in ScanIfPresent(reader.Directory))
            {
                reader.OpenSegment(number, npyPath);
            }
        }
        catch
        {
            reader.Dispose();
            throw;
        }

        return reader;
    }

    /// <summary>
    /// The segments of a kind folder; none when there is no folder, or when an invalidation renames it away while it is
    /// scanned (the kind then reads as empty, as it does once the new generation's folder is in place).
    /// </summary>
    private static SortedDictionary<int, string> ScanIfPresent(string directory)
    {
        try
        {
            return KindFolderFiles.Scan(directory).Segments;
        }
        catch (DirectoryNotFoundException)
        {
            return [];
        }
    }

    /// <summary>Every committed row, in storage order (segment by segment, row by row).</summary>
    public IEnumerable<StoredRow> Rows()
    {
        for (int s = 0; s < _segments.Count; s++)
        {
            IReadOnlyList<SidecarRecord> records = _segments[s].Records;
            for (int r = 0; r < records.Count; r++)
            {
                yield return new StoredRow(s, r, records[r].Key, records[r].Id);
            }
        }
    }

    /// <summary>
    /// The rows a server serves: the newest row of each id and, for rows without id, the newest row of each key
    /// that no live id row already carries. In storage order.
    /// </summary>
    public IReadOnlyList<StoredRow> LiveRows()
    {
        var all = Rows().ToList();
        var newestById = new Dictionary<string, int>(StringComparer.Ordinal);
        var newestByKey = new Dictionary<ContentKey, int>();
        for (int i = 0; i < all.Count; i++)
        {
            if (all[i].Id is { } id)
            {
                newestById[id] = i;
            }
            else if (all[i].Key is { } key)
            {
                newestByKey[key] = i;
            }
        }

        var keysWithId = newestById.Values.Select(i => all[i].Key).OfType<ContentKey>().ToHashSet();
        var live = new List<StoredRow>(newestById.Count + newestByKey.Count);
        for (int i = 0; i < all.Count; i++)
        {
            bool newest = all[i].Id is { } id
                ? newestById[id] == i
                : all[i].Key is { } key && newestByKey[key] == i && !keysWithId.Contains(key);
            if (newest)
            {
                live.Add(all[i]);
            }
        }

        return live;
    }

    /// <summary>Copies the stored bytes of <paramref name="row"/> (<see cref="DType"/>, little-endian) into the first <see cref="RowBytes"/> of <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The row is not one of this reader's, or the destination is too small.</exception>
    public void ReadVector(StoredRow row, Span<byte> destination)
    {
        if ((uint)row.Segment >= (uint)_segments.Count || (uint)row.Row >= (uint)_segments[row.Segment].Rows)
        {
            throw new ArgumentOutOfRangeException(nameof(row), row, "Not a committed row of this reader.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, RowBytes, nameof(destination));
        RandomAccess.Read(_segments[row.Segment].Npy, destination[..RowBytes], _layout.HeaderLength + ((long)row.Row * RowBytes));
    }

    /// <summary>
    /// True while what <see cref="Open"/> read is still what the folder holds: the same kind folder (an invalidation
    /// swaps it), the same generation, and a cache manifest of the same fingerprint, dims and dtype. Rows committed since
    /// do not count: the reader's rows stay a committed prefix of that generation.
    /// </summary>
    public bool IsUnchanged()
    {
        CacheManifest? manifest = CacheManifest.TryRead(_manifestPath, Model, out _);
        return manifest is not null
            && manifest.Fingerprint == _manifest.Fingerprint && manifest.Dims == _manifest.Dims && manifest.DType == _manifest.DType
            && ReadGeneration(Path.Combine(Directory, CacheManifest.FileName)) == _generation
            && NativeFile.IdentityOf(Directory) == _folderIdentity;
    }

    /// <summary>
    /// Writes the committed part of <paramref name="segment"/> as plain files: a header counting its committed rows,
    /// exactly those rows, and their sidecar records. A sealed segment comes out byte for byte; a growing one without its
    /// reserve and without records past the count.
    /// </summary>
    /// <returns>Bytes written.</returns>
    /// <exception cref="IOException">A destination file exists or cannot be written.</exception>
    public long CopyCommitted(KindSegment segment, string npyPath, string sidecarPath)
    {
        ArgumentNullException.ThrowIfNull(segment);
        if (!_segments.Contains(segment))
        {
            throw new ArgumentException("Not a segment of this reader.", nameof(segment));
        }

        var header = new byte[_layout.HeaderLength];
        _layout.WriteHeader(header, segment.Rows);
        long npyBytes = CopyFile(header, segment.Npy, _layout.HeaderLength, (long)segment.Rows * _layout.RowBytes, npyPath);
        long sidecarBytes = CopyFile([], segment.Sidecar, 0, segment.SidecarBytes, sidecarPath);
        return npyBytes + sidecarBytes;
    }

    /// <summary>
    /// Writes the kind manifest of a copy of this reader's segments (as <see cref="CopyCommitted"/> wrote them):
    /// generation as read (1 when the writer published none), sequence and rows the copied rows.
    /// </summary>
    public void WriteCopyManifest(string path)
    {
        var files = new JsonArray();
        foreach (KindSegment segment in _segments)
        {
            files.Add(new JsonObject
            {
                ["file"] = Path.GetFileName(segment.NpyPath),
                ["sidecar"] = Path.GetFileName(segment.SidecarPath),
                ["rows"] = segment.Rows,
                ["sealed"] = segment.IsSealed,
            });
        }

        var json = new JsonObject
        {
            ["kind"] = Kind.Name(),
            ["dims"] = Dims,
            ["dtype"] = Descr,
            ["generation"] = _generation ?? 1,
            ["sequence"] = RowCount,
            ["rows"] = RowCount,
            ["format_version"] = CacheManifest.FormatVersion,
            ["updated_at"] = CacheManifest.FormatTime(DateTimeOffset.UtcNow),
            ["segments"] = files,
        };
        AtomicFile.Write(path, Encoding.UTF8.GetBytes(json.ToJsonString(Indented) + "\n"), sync: true);
    }

    /// <summary>
    /// Writes the cache manifest of a copy as read at <see cref="Open"/>, with the counts of the copy and the snapshot
    /// mark that makes a server refuse it rather than drop it when the model's fingerprint differs.
    /// </summary>
    public void WriteSnapshotManifest(string path, long queryRows, long documentRows, long bytes, DateTimeOffset createdAt) =>
        _manifest.WriteSnapshotCopy(path, queryRows, documentRows, bytes, createdAt);

    /// <summary>Closes the segment handles.</summary>
    public void Dispose()
    {
        foreach (KindSegment segment in _segments)
        {
            segment.Npy.Dispose();
            segment.Sidecar?.Dispose();
        }
    }

    private static long CopyFile(byte[] prefix, SafeFileHandle? source, long offset, long length, string destination)
    {
        using var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0);
        output.Write(prefix);
        var buffer = new byte[(int)Math.Min(CopyChunkBytes, Math.Max(length, 1))];
        for (long done = 0; done < length;)
        {
            int chunk = (int)Math.Min(buffer.Length, length - done);
            int read = RandomAccess.Read(source!, buffer.AsSpan(0, chunk), offset + done);
            if (read == 0)
            {
                throw new IOException($"{destination}: its source ended {length - done} bytes before its committed end");
            }

            output.Write(buffer, 0, read);
            done += read;
        }

        output.Flush(flushToDisk: true);
        return prefix.Length + length;
    }

    /// <summary>The generation the writer published for the kind; null when there is none (no folder yet, or unreadable).</summary>
    private static long? ReadGeneration(string kindManifestPath) => KindManifest.TryRead(kindManifestPath, out _)?.Generation;

    private void OpenSegment(int number, string npyPath)
    {
        string name = Path.GetFileName(npyPath);
        string sidecarPath = Path.Combine(Directory, Segment.SidecarName(number));
        SafeFileHandle? npy = null;
        SafeFileHandle? sidecar = null;
        try
        {
            npy = KindFolderFiles.OpenForRead(npyPath);
            SegmentHeader header = KindFolderFiles.ReadHeader(npy, _layout);
            string? problem = header.Count is not { } rows ? header.Problem
                : header.FittingRows < rows ? $"{rows} rows need {_layout.FileLength(rows)} bytes but the file has {header.FileLength}"
                : null;
            if (problem is not null)
            {
                _problems.Add($"{name}: {problem}");
                return;
            }

            // The header count is rewritten only after its sidecar records are durable: a live writer's sidecar
            // may hold more records (uncommitted), never fewer.
            int committed = header.Count!.Value;
            var records = new List<SidecarRecord>(committed);
            sidecar = KindFolderFiles.OpenSidecar(sidecarPath);
            KeySidecar.Stop stop = KeySidecar.Read(sidecar is null ? [] : KindFolderFiles.ReadAll(sidecar), committed, records, out long sidecarBytes);
            if (records.Count < committed)
            {
                _problems.Add(stop == KeySidecar.Stop.Invalid
                    ? $"{Path.GetFileName(sidecarPath)}: record {records.Count} is not a [key, id] record (the header counts {committed} rows)"
                    : $"{Path.GetFileName(sidecarPath)}: {records.Count} readable records for {committed} rows");
                return;
            }

            bool isSealed = header.FileLength == _layout.FileLength(committed);
            _segments.Add(new KindSegment(number, npyPath, sidecarPath, npy, sidecar, sidecarBytes, isSealed, records));
            npy = null;
            sidecar = null;
        }
        catch (IOException e)
        {
            _problems.Add($"{name}: {e.Message}"); // e.g. deleted by an invalidation between listing and opening
        }
        finally
        {
            npy?.Dispose();
            sidecar?.Dispose();
        }
    }
}
