using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>Torn tails and corrupt files, made by hand the way a crash or a stray copy would leave them.</summary>
public sealed class RecoveryTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 4;

    // A key-only record: fixarray(2), bin8 header (2 bytes), 16 key bytes, nil.
    private const int KeyOnlyRecordBytes = 20;

    private static readonly NpyLayout Layout = new(Dims, VectorDType.Float32);
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    private string QueryDirectory => _artifacts.KindDirectory("mini", VectorKind.Query);

    private string Npy(int number) => Path.Combine(QueryDirectory, $"{number:D6}.npy");

    private string Sidecar(int number) => Path.Combine(QueryDirectory, $"{number:D6}.keys.msgpack");

    [Fact]
    public async Task A_segment_cut_mid_row_keeps_the_whole_rows()
    {
        await WriteRowsAsync(10, segmentRows: 100);
        SetLength(Npy(0), Layout.FileLength(7) + (Layout.RowBytes / 2));

        await AssertRecoveredAsync(expectedRows: 7, segmentRows: 100, () =>
        {
            Assert.Single(_artifacts.Logs.Events("SegmentTailTruncated"));
            Assert.Equal(7 * KeyOnlyRecordBytes, new FileInfo(Sidecar(0)).Length);
            Assert.Equal(7, ReadHeaderCount(Npy(0)));
        });
    }

    [Fact]
    public async Task A_sidecar_ending_in_a_partial_record_drops_that_row()
    {
        await WriteRowsAsync(10, segmentRows: 100);
        SetLength(Sidecar(0), (10 * KeyOnlyRecordBytes) - 3);

        await AssertRecoveredAsync(expectedRows: 9, segmentRows: 100, () =>
        {
            Assert.Equal(9, ReadHeaderCount(Npy(0)));
            Assert.Equal(9 * KeyOnlyRecordBytes, new FileInfo(Sidecar(0)).Length);
        });
    }

    [Fact]
    public async Task A_header_count_ahead_of_the_sidecar_is_lowered_to_the_records()
    {
        await WriteRowsAsync(10, segmentRows: 100);
        SetLength(Sidecar(0), 6 * KeyOnlyRecordBytes);

        await AssertRecoveredAsync(expectedRows: 6, segmentRows: 100, () => Assert.Equal(6, ReadHeaderCount(Npy(0))));
    }

    [Fact]
    public async Task Records_past_the_header_count_are_an_uncommitted_tail()
    {
        await WriteRowsAsync(10, segmentRows: 100);
        WriteHeaderCount(Npy(0), 8); // as if the process died after the sidecar write, before the count

        await AssertRecoveredAsync(expectedRows: 8, segmentRows: 100, () => Assert.Equal(8 * KeyOnlyRecordBytes, new FileInfo(Sidecar(0)).Length));
    }

    [Fact]
    public async Task A_header_count_beyond_everything_is_lowered()
    {
        await WriteRowsAsync(10, segmentRows: 100);
        WriteHeaderCount(Npy(0), 15);

        await AssertRecoveredAsync(expectedRows: 10, segmentRows: 100, () => Assert.Equal(10, ReadHeaderCount(Npy(0))));
    }

    [Fact]
    public async Task A_segment_interrupted_while_sealing_is_sealed_on_open()
    {
        await WriteRowsAsync(10, segmentRows: 5);
        // Segment 0 as it was before the seal truncated it: pre-sized.
        SetLength(Npy(0), Layout.FileLength(5) + (3 * Layout.RowBytes));

        await AssertRecoveredAsync(expectedRows: 10, segmentRows: 5, () => Assert.Equal(Layout.FileLength(5), new FileInfo(Npy(0)).Length));
    }

    [Fact]
    public async Task Corrupt_and_foreign_files_are_quarantined_and_the_rest_served()
    {
        await WriteRowsAsync(20, segmentRows: 5); // segments 0-3, sealed
        byte[] header = await File.ReadAllBytesAsync(Npy(1));
        header[20] = (byte)'X'; // inside 'descr'
        await File.WriteAllBytesAsync(Npy(1), header);
        await File.WriteAllBytesAsync(Sidecar(2), Enumerable.Repeat((byte)0xC1, 100).ToArray()); // 0xC1 is never valid msgpack
        await File.WriteAllTextAsync(Path.Combine(QueryDirectory, "manifest.json"), "{ not json");
        await File.WriteAllTextAsync(Path.Combine(QueryDirectory, "notes.txt"), "hello");
        await File.WriteAllBytesAsync(Sidecar(9), [0x92, 0xC0, 0xC0]);
        File.Copy(Npy(3), Npy(7)); // wrong dims: rewrite its header for 5 dims
        var other = new NpyLayout(5, VectorDType.Float32);
        byte[] otherHeader = new byte[other.HeaderLength];
        other.WriteHeader(otherHeader, 1);
        using (var stream = new FileStream(Npy(7), FileMode.Open))
        {
            stream.Write(otherHeader);
        }

        File.WriteAllBytes(Npy(8), new byte[5]); // truncated inside the header

        using ArtifactsRoot root = _artifacts.Open(segmentRows: 5);
        VectorStore store = root.OpenCache("mini")![VectorKind.Query];

        Assert.Equal(10, store.RowCount);
        float[]?[] all = Rows.GatherKeys(store, [.. Enumerable.Range(0, 20).Select(Rows.Key)]);
        for (int n = 0; n < 20; n++)
        {
            bool kept = n is < 5 or >= 15;
            Assert.Equal(kept ? Rows.Vector(n, Dims) : null, all[n]);
        }

        string quarantine = Path.Combine(root.RootDirectory, "quarantine", "mini");
        string[] moved = [.. Directory.GetFiles(quarantine).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        Assert.Equal(
            [
                "query-000001.keys.msgpack", "query-000001.npy", "query-000002.keys.msgpack", "query-000002.npy",
                "query-000007.npy", "query-000008.npy", "query-000009.keys.msgpack", "query-manifest.json", "query-notes.txt",
            ],
            moved);
        Assert.Equal(moved.Length, _artifacts.Logs.Count("QuarantinedFile"));
        Assert.All(_artifacts.Logs.Events("QuarantinedFile"), e => Assert.Contains("mini/query/", e.Message));
        Assert.True(CacheManifestIsJson(Path.Combine(QueryDirectory, "manifest.json")));

        // Appends go on after the last kept segment, and numpy reads what is left.
        await store.AppendAsync(Rows.Batch(Dims, [100], withIds: false), AppendMode.Overwrite, -1);
        Assert.Equal(Rows.Vector(100, Dims), Rows.One(store, 100));
        Assert.True(File.Exists(Npy(9))); // after the highest segment seen, quarantined ones included
        var dump = await NumpyReader.DumpAsync(QueryDirectory);
        Assert.Equal(11, NumpyReader.RowsOf(dump).Count);
    }

    [Fact]
    public async Task A_cache_manifest_that_is_not_json_never_serves_its_vectors()
    {
        await WriteRowsAsync(3, segmentRows: 100);
        string manifest = Path.Combine(_artifacts.Root, "embeddings", "mini", "manifest.json");
        await File.WriteAllTextAsync(manifest, "\0\0garbage");

        using ArtifactsRoot root = _artifacts.Open();
        Assert.Null(root.OpenCache("mini"));
        Assert.Equal(1, _artifacts.Logs.Count("QuarantinedFile"));

        ModelCache cache = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims));
        Assert.Equal(0, cache[VectorKind.Query].RowCount);
        Assert.Null(Rows.One(cache[VectorKind.Query], 1));
        Assert.True(Directory.Exists(Path.Combine(root.RootDirectory, "quarantine", "mini", "cache-query")));
        Assert.Equal(2, _artifacts.Logs.Count("QuarantinedFile"));
    }

    [Fact]
    public async Task Leftover_temporary_files_are_deleted()
    {
        await WriteRowsAsync(3, segmentRows: 100);
        await File.WriteAllBytesAsync(Path.Combine(QueryDirectory, "000001.npy.tmp"), new byte[3]);

        await AssertRecoveredAsync(expectedRows: 3, segmentRows: 100);
        Assert.False(File.Exists(Path.Combine(QueryDirectory, "000001.npy.tmp")));
        Assert.Equal(0, _artifacts.Logs.Count("QuarantinedFile"));
    }

    private async Task WriteRowsAsync(int rows, int segmentRows)
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: segmentRows);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, rows), withIds: false), AppendMode.Overwrite, -1);
    }

    /// <summary>Reopens; exactly rows 0..expectedRows-1 are served, the files load in numpy, and appends continue.</summary>
    private async Task AssertRecoveredAsync(int expectedRows, int segmentRows, Action? checkFilesAfterOpen = null)
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: segmentRows);
        VectorStore store = root.OpenCache("mini")![VectorKind.Query];
        checkFilesAfterOpen?.Invoke();
        Assert.Equal(expectedRows, store.RowCount);
        float[]?[] all = Rows.GatherKeys(store, [.. Enumerable.Range(0, expectedRows + 3).Select(Rows.Key)]);
        for (int n = 0; n < all.Length; n++)
        {
            Assert.Equal(n < expectedRows ? Rows.Vector(n, Dims) : null, all[n]);
        }

        var dump = await NumpyReader.DumpAsync(QueryDirectory);
        Assert.Equal(expectedRows, NumpyReader.RowsOf(dump).Count);

        await store.AppendAsync(Rows.Batch(Dims, [1000], withIds: false), AppendMode.Overwrite, -1);
        Assert.Equal(Rows.Vector(1000, Dims), Rows.One(store, 1000));
        dump = await NumpyReader.DumpAsync(QueryDirectory);
        var rows = NumpyReader.RowsOf(dump);
        Assert.Equal(expectedRows + 1, rows.Count);
        Assert.Equal(Rows.Key(1000).ToString(), rows[^1].Key);
        Assert.Equal(Rows.Vector(1000, Dims), rows[^1].Vector);
    }

    private static void SetLength(string path, long length)
    {
        using var stream = new FileStream(path, FileMode.Open);
        stream.SetLength(length);
    }

    private static int? ReadHeaderCount(string path)
    {
        byte[] header = new byte[Layout.HeaderLength];
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read);
        stream.ReadExactly(header);
        return Layout.TryReadCount(header);
    }

    private static void WriteHeaderCount(string path, int rows)
    {
        byte[] word = new byte[8];
        NpyLayout.FormatCount(word, rows);
        using var stream = new FileStream(path, FileMode.Open);
        stream.Position = Layout.CountOffset;
        stream.Write(word);
    }

    private static bool CacheManifestIsJson(string path) => System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path)) is System.Text.Json.Nodes.JsonObject;
}
