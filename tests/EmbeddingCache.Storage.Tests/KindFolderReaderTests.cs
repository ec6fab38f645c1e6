using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>The read-only reader of a kind folder: what export, verify and followers see of a writer's files.</summary>
public sealed class KindFolderReaderTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 4;
    private const int SegmentRows = 4;
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    private string Npy(int number) => Path.Combine(_artifacts.KindDirectory("mini", VectorKind.Document), $"{number:D6}.npy");

    private string Sidecar(int number) => Path.Combine(_artifacts.KindDirectory("mini", VectorKind.Document), $"{number:D6}.keys.msgpack");

    [Fact]
    public async Task Reads_every_committed_row_next_to_the_live_writer_that_holds_the_lock()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: SegmentRows);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 6)), AppendMode.Overwrite, -1);
        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(6, 4), withIds: false), AppendMode.Overwrite, -1);

        using KindFolderReader reader = KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Document);

        Assert.Empty(reader.Problems);
        Assert.Equal((Dims, VectorDType.Float32, "<f4", Dims * 4), (reader.Dims, reader.DType, reader.Descr, reader.RowBytes));
        Assert.Equal([0, 1, 2], reader.Segments.Select(s => s.Number));
        Assert.Equal([4, 4, 2], reader.Segments.Select(s => s.Rows));
        Assert.Equal(Npy(1), reader.Segments[1].NpyPath);
        Assert.Equal(Sidecar(1), reader.Segments[1].SidecarPath);
        Assert.Equal(10, reader.RowCount);
        StoredRow[] rows = [.. reader.Rows()];
        Assert.Equal(10, rows.Length);
        byte[] vector = new byte[reader.RowBytes];
        for (int n = 0; n < rows.Length; n++)
        {
            Assert.Equal((n / SegmentRows, n % SegmentRows), (rows[n].Segment, rows[n].Row));
            Assert.Equal(Rows.Key(n), rows[n].Key);
            Assert.Equal(n < 6 ? Rows.Id(n) : null, rows[n].Id);
            reader.ReadVector(rows[n], vector);
            Assert.Equal(Rows.Vector(n, Dims), MemoryMarshal.Cast<byte, float>(vector).ToArray());
        }

        Assert.Empty(_artifacts.Logs.Events("QuarantinedFile"));
    }

    [Fact]
    public async Task Live_rows_are_the_newest_row_of_each_id_and_of_each_key_without_one()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: SegmentRows);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 3)), AppendMode.Overwrite, -1);
        await store.AppendAsync(Rows.Batch(Dims, [1], offset: 0.5f), AppendMode.Overwrite, -1);            // a newer r1
        await store.AppendAsync(Rows.Batch(Dims, [7, 7], withIds: false), AppendMode.Overwrite, -1);       // one key twice
        await store.AppendAsync(Rows.Batch(Dims, [2], withIds: false), AppendMode.Overwrite, -1);          // r2's key, no id

        using KindFolderReader reader = KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Document);
        IReadOnlyList<StoredRow> live = reader.LiveRows();

        Assert.Equal(7, reader.RowCount);
        Assert.Equal(["r0", "r2", "r1", null], live.Select(r => r.Id));
        Assert.Equal([Rows.Key(0), Rows.Key(2), Rows.Key(1), Rows.Key(7)], live.Select(r => r.Key));
        byte[] vector = new byte[reader.RowBytes];
        reader.ReadVector(live[2], vector);
        Assert.Equal(Rows.Vector(1, Dims, 0.5f), MemoryMarshal.Cast<byte, float>(vector).ToArray());
        Assert.Equal((1, 1), (live[3].Segment, live[3].Row)); // the second of the two key-only rows
    }

    [Fact]
    public async Task Untrustworthy_segments_are_reported_and_left_out_and_no_file_is_changed()
    {
        using (ArtifactsRoot root = _artifacts.Open(segmentRows: SegmentRows))
        {
            VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
            await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 16)), AppendMode.Overwrite, -1);
        }

        SetLength(Npy(1), new NpyLayout(Dims, VectorDType.Float32).FileLength(2));    // cut inside the committed rows
        File.WriteAllBytes(Sidecar(2), File.ReadAllBytes(Sidecar(2))[..30]);            // one whole record, then a torn one
        await File.WriteAllBytesAsync(Npy(3), new byte[200]);                          // not a .npy
        Dictionary<string, string> before = Hashes();

        using KindFolderReader reader = KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Document);

        Assert.Equal([0], reader.Segments.Select(s => s.Number));
        Assert.Equal(4, reader.RowCount);
        Assert.Collection(
            reader.Problems,
            p => Assert.StartsWith("000001.npy: 4 rows need", p),
            p => Assert.Equal("000002.keys.msgpack: 1 readable records for 4 rows", p),
            p => Assert.Equal("000003.npy: not a .npy file is not the expected '<f4' (rows, 4) header", p));
        Assert.Equal(before, Hashes());
    }

    [Fact]
    public async Task A_reader_keeps_reading_the_rows_it_opened_after_the_writer_invalidates_them()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: SegmentRows);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 6)), AppendMode.Overwrite, -1);
        using KindFolderReader reader = KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Document);

        store.Invalidate();
        await store.AppendAsync(Rows.Batch(Dims, [40]), AppendMode.Overwrite, -1);

        byte[] vector = new byte[reader.RowBytes];
        reader.ReadVector(reader.Rows().Last(), vector);
        Assert.Equal(Rows.Vector(5, Dims), MemoryMarshal.Cast<byte, float>(vector).ToArray());
        using KindFolderReader after = KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Document);
        Assert.Equal([Rows.Id(40)], after.Rows().Select(r => r.Id));
    }

    [Fact]
    public async Task Opening_fails_clearly_without_a_readable_cache_manifest()
    {
        Assert.Throws<DirectoryNotFoundException>(() => KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Query));
        Assert.Throws<ArgumentException>(() => KindFolderReader.Open(_artifacts.Root, "../mini", VectorKind.Query));

        string modelDirectory = Path.Combine(_artifacts.Root, "embeddings", "mini");
        Directory.CreateDirectory(modelDirectory);
        await File.WriteAllTextAsync(Path.Combine(modelDirectory, "manifest.json"), "{ \"dims\": 4, oops");
        var error = Assert.Throws<InvalidDataException>(() => KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Query));
        Assert.Contains("manifest.json cannot be read: not valid JSON", error.Message);
    }

    [Fact]
    public async Task Rows_outside_the_reader_are_refused()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: SegmentRows);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 2)), AppendMode.Overwrite, -1);
        using KindFolderReader reader = KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Document);

        byte[] vector = new byte[reader.RowBytes];
        Assert.Throws<ArgumentOutOfRangeException>(() => reader.ReadVector(new StoredRow(0, 2, null, null), vector));
        Assert.Throws<ArgumentOutOfRangeException>(() => reader.ReadVector(new StoredRow(1, 0, null, null), vector));
        Assert.Throws<ArgumentOutOfRangeException>(() => reader.ReadVector(new StoredRow(0, 0, null, null), new byte[reader.RowBytes - 1]));
    }

    private Dictionary<string, string> Hashes() =>
        Directory.GetFiles(_artifacts.KindDirectory("mini", VectorKind.Document))
            .ToDictionary(path => Path.GetFileName(path), path => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path))));

    private static void SetLength(string path, long length)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.SetLength(length);
    }
}
