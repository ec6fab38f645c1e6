using System.Buffers;
using System.Text.Json;
using MessagePack;

namespace EmbeddingCache.Storage;

/// <summary>One committed row as the files hold it.</summary>
public readonly record struct StoredRow(int Segment, int Row, ContentKey? Key, string? Id);

/// <summary>
/// The committed rows of one model's kind, read straight from its files the way numpy does: no lock is
/// taken (invariant N1 keeps every file consistent while a server appends), so export and verify run next
/// to a live server. Problems found on the way are collected for <c>verify</c>, not thrown.
/// </summary>
public sealed class KindSnapshot
{
    private readonly List<(string Path, NpyHeader Header, List<(ContentKey? Key, string? Id)> Records)> segments = [];
    private readonly List<string> problems = [];

    private KindSnapshot(string directory, int dims, VectorDType dtype)
    {
        Directory = directory;
        Dims = dims;
        DType = dtype;
    }

    /// <summary>The kind folder read.</summary>
    public string Directory { get; }

    /// <summary>Floats per row, from the cache manifest.</summary>
    public int Dims { get; }

    /// <summary>Element type of the rows, from the cache manifest.</summary>
    public VectorDType DType { get; }

    /// <summary>What is wrong with the files, one line each; empty when all is well.</summary>
    public IReadOnlyList<string> Problems => problems;

    /// <summary>Committed rows over all segments, including rows superseded by newer writes.</summary>
    public long RowCount => segments.Sum(s => (long)s.Records.Count);

    /// <summary>Segment files read.</summary>
    public int SegmentCount => segments.Count;

    /// <summary>Reads the manifest and every segment of <paramref name="kind"/> of <paramref name="model"/>.</summary>
    /// <exception cref="DirectoryNotFoundException">The model has no cache under the root.</exception>
    /// <exception cref="InvalidDataException">The cache manifest cannot be read.</exception>
    public static KindSnapshot Read(string artifactsRoot, string model, VectorKind kind)
    {
        string modelDirectory = Path.Combine(artifactsRoot, "embeddings", model);
        string manifestPath = Path.Combine(modelDirectory, "manifest.json");
        if (!File.Exists(manifestPath)) throw new DirectoryNotFoundException($"no cache of '{model}': {manifestPath} does not exist");
        int dims;
        VectorDType dtype;
        try
        {
            using var manifest = JsonDocument.Parse(File.ReadAllBytes(manifestPath));
            dims = manifest.RootElement.GetProperty("dims").GetInt32();
            dtype = manifest.RootElement.GetProperty("dtype").GetString() == "<f2" ? VectorDType.Float16 : VectorDType.Float32;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{manifestPath} cannot be read: {e.Message}", e);
        }

        var snapshot = new KindSnapshot(Path.Combine(modelDirectory, kind.Name()), dims, dtype);
        if (System.IO.Directory.Exists(snapshot.Directory))
        {
            foreach (var npy in System.IO.Directory.GetFiles(snapshot.Directory, "*.npy").Order(StringComparer.Ordinal))
            {
                snapshot.ReadSegment(npy);
            }
        }
        return snapshot;
    }

    /// <summary>
    /// The rows a reader is served: the newest row of each id and, for rows without id, the newest row of each
    /// key that no live id row already carries. In storage order.
    /// </summary>
    public IReadOnlyList<StoredRow> LiveRows()
    {
        var all = new List<StoredRow>();
        for (int s = 0; s < segments.Count; s++)
        {
            var records = segments[s].Records;
            for (int r = 0; r < records.Count; r++) all.Add(new StoredRow(s, r, records[r].Key, records[r].Id));
        }
        var newestById = new Dictionary<string, int>(StringComparer.Ordinal);
        var newestByKey = new Dictionary<ContentKey, int>();
        for (int i = 0; i < all.Count; i++)
        {
            if (all[i].Id is { } id) newestById[id] = i;
            else if (all[i].Key is { } key) newestByKey[key] = i;
        }
        var keysWithId = newestById.Values.Select(i => all[i].Key).OfType<ContentKey>().ToHashSet();
        var live = new List<StoredRow>(newestById.Count + newestByKey.Count);
        for (int i = 0; i < all.Count; i++)
        {
            bool newest = all[i].Id is { } id
                ? newestById[id] == i
                : all[i].Key is { } key && newestByKey[key] == i && !keysWithId.Contains(key);
            if (newest) live.Add(all[i]);
        }
        return live;
    }

    /// <summary>Copies the stored bytes of <paramref name="row"/> (<see cref="DType"/>, little-endian) into <paramref name="destination"/>.</summary>
    public void ReadVector(StoredRow row, Span<byte> destination)
    {
        var (path, header, _) = segments[row.Segment];
        int rowBytes = Dims * DType.BytesPerElement();
        using var handle = File.OpenHandle(path);
        RandomAccess.Read(handle, destination[..rowBytes], header.DataOffset + (long)row.Row * rowBytes);
    }

    private void ReadSegment(string npy)
    {
        string name = Path.GetFileName(npy);
        NpyHeader header;
        try
        {
            header = NpyHeader.Read(npy);
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            problems.Add($"{name}: {e.Message}");
            return;
        }
        if (header.VectorType != DType || header.Shape.Length != 2 || header.Columns != Dims || header.FortranOrder)
        {
            problems.Add($"{name}: header says {header.Descr} ({string.Join(", ", header.Shape)}) fortran_order={header.FortranOrder}; " +
                         $"the manifest says {DType.NpyDescr()} with {Dims} dims in C order");
            return;
        }
        long rows = header.Rows;
        long needed = header.DataOffset + rows * Dims * DType.BytesPerElement();
        long length = new FileInfo(npy).Length;
        if (length < needed)
        {
            problems.Add($"{name}: {rows} rows need {needed} bytes but the file has {length}");
            return;
        }
        string sidecar = npy[..^".npy".Length] + ".keys.msgpack";
        var records = ReadSidecar(sidecar, rows);
        if (records.Count < rows)
        {
            problems.Add($"{Path.GetFileName(sidecar)}: {records.Count} readable records for {rows} rows");
            return;
        }
        segments.Add((npy, header, records));
    }

    /// <summary>The first <paramref name="rows"/> records; a sidecar may hold more while a write is in flight.</summary>
    private static List<(ContentKey? Key, string? Id)> ReadSidecar(string path, long rows)
    {
        var records = new List<(ContentKey?, string?)>();
        if (!File.Exists(path)) return records;
        var reader = new MessagePackReader(new ReadOnlySequence<byte>(File.ReadAllBytes(path)));
        try
        {
            while (records.Count < rows && !reader.End)
            {
                if (reader.ReadArrayHeader() != 2) break;
                ContentKey? key = null;
                if (!reader.TryReadNil())
                {
                    var bytes = reader.ReadBytes() ?? default;
                    if (bytes.Length != ContentKey.Size) break;
                    key = ContentKey.ReadFrom(bytes.ToArray());
                }
                string? id = reader.TryReadNil() ? null : reader.ReadString();
                records.Add((key, id));
            }
        }
        catch (MessagePackSerializationException)
        {
            // A torn or foreign tail: the records before it stand.
        }
        catch (EndOfStreamException)
        {
            // Likewise.
        }
        return records;
    }
}
