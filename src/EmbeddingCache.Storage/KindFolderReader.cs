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
    internal KindSegment(int number, string npyPath, string sidecarPath, SafeFileHandle npy, IReadOnlyList<SidecarRecord> records)
    {
        Number = number;
        NpyPath = npyPath;
        SidecarPath = sidecarPath;
        Npy = npy;
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

    /// <summary>The one handle every row of this segment is read through.</summary>
    internal SafeFileHandle Npy { get; }
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
/// safe from several threads at once.
/// </remarks>
public sealed class KindFolderReader : IDisposable
{
    private readonly NpyLayout _layout;
    private readonly List<KindSegment> _segments = [];
    private readonly List<string> _problems = [];

    private KindFolderReader(string model, VectorKind kind, string directory, NpyLayout layout)
    {
        Model = model;
        Kind = kind;
        Directory = directory;
        _layout = layout;
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

        var reader = new KindFolderReader(model, kind, Path.Combine(modelDirectory, kind.Name()), new NpyLayout(manifest.Dims, manifest.DType));
        try
        {
            if (System.IO.Directory.Exists(reader.Directory))
            {
                foreach ((int number, string npyPath) in KindFolderFiles.Scan(reader.Directory).Segments)
                {
                    reader.OpenSegment(number, npyPath);
                }
            }
        }
        catch
        {
            reader.Dispose();
            throw;
        }

        return reader;
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

    /// <summary>Closes the segment handles.</summary>
    public void Dispose()
    {
        foreach (KindSegment segment in _segments)
        {
            segment.Npy.Dispose();
        }
    }

    private void OpenSegment(int number, string npyPath)
    {
        string name = Path.GetFileName(npyPath);
        string sidecarPath = Path.Combine(Directory, Segment.SidecarName(number));
        SafeFileHandle? npy = null;
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
            KeySidecar.Stop stop = KeySidecar.Read(KindFolderFiles.ReadSidecar(sidecarPath), committed, records);
            if (records.Count < committed)
            {
                _problems.Add(stop == KeySidecar.Stop.Invalid
                    ? $"{Path.GetFileName(sidecarPath)}: record {records.Count} is not a [key, id] record (the header counts {committed} rows)"
                    : $"{Path.GetFileName(sidecarPath)}: {records.Count} readable records for {committed} rows");
                return;
            }

            _segments.Add(new KindSegment(number, npyPath, sidecarPath, npy, records));
            npy = null;
        }
        catch (IOException e)
        {
            _problems.Add($"{name}: {e.Message}"); // e.g. deleted by an invalidation between listing and opening
        }
        finally
        {
            npy?.Dispose();
        }
    }
}
