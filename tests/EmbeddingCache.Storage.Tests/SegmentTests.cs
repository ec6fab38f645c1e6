using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

public sealed class SegmentTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 4;
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    [Fact]
    public void The_header_keeps_the_row_count_in_one_aligned_word_and_pads_to_64()
    {
        foreach (int dims in (int[])[1, 4, 384, 1024, 65536])
        {
            foreach (VectorDType dtype in (VectorDType[])[VectorDType.Float32, VectorDType.Float16])
            {
                var layout = new NpyLayout(dims, dtype);
                byte[] header = new byte[layout.HeaderLength];
                layout.WriteHeader(header, 12345678);
                string text = System.Text.Encoding.Latin1.GetString(header, 10, header.Length - 10);

                Assert.Equal(0, layout.HeaderLength % 64);
                Assert.Equal(0, layout.CountOffset % 8);
                Assert.Equal("12345678", System.Text.Encoding.ASCII.GetString(header, layout.CountOffset, 8));
                Assert.EndsWith("\n", text);
                Assert.StartsWith($"{{'descr': '{dtype.NpyDescr()}', 'fortran_order': False, 'shape': (", text);
                Assert.Contains($"12345678, {dims}), }}", text);
                Assert.Equal(header.Length - 10, header[8] | (header[9] << 8));
                Assert.Equal([0x93, .. "NUMPY"u8, 1, 0], header[..8]);
                Assert.Equal(12345678, layout.TryReadCount(header));

                layout.WriteHeader(header, 7);
                Assert.Equal("       7", System.Text.Encoding.ASCII.GetString(header, layout.CountOffset, 8));
                Assert.Equal(7, layout.TryReadCount(header));
                Assert.Null(new NpyLayout(dims + 1, dtype).TryReadCount(header));
            }
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => new StorageOptions { SegmentRows = 100_000_000 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new StorageOptions { SegmentRows = 0 }.Validate());
    }

    [Fact]
    public async Task Full_segments_are_sealed_to_their_exact_size_and_reads_span_segments()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 5);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        var layout = new NpyLayout(Dims, VectorDType.Float32);

        Assert.Equal(3, await store.AppendAsync(Rows.Batch(Dims, [0, 1, 2]), AppendMode.Overwrite, -1));
        Assert.Equal(9, await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(3, 9)), AppendMode.Overwrite, -1));

        string directory = _artifacts.KindDirectory("mini", VectorKind.Query);
        Assert.Equal(layout.FileLength(5), new FileInfo(Path.Combine(directory, "000000.npy")).Length);
        Assert.Equal(layout.FileLength(5), new FileInfo(Path.Combine(directory, "000001.npy")).Length);
        Assert.Equal(layout.FileLength(5), new FileInfo(Path.Combine(directory, "000002.npy")).Length); // pre-sized, 2 rows committed
        Assert.Equal(3, store.SegmentCount);
        Assert.Equal(12, store.RowCount);
        Assert.Equal([true, true, false], store.SegmentsSnapshot.Select(s => s.IsSealed));

        float[]?[] all = Rows.GatherKeys(store, [.. Enumerable.Range(0, 12).Select(Rows.Key)]);
        for (int n = 0; n < 12; n++)
        {
            Assert.Equal(Rows.Vector(n, Dims), all[n]);
        }

        // Every row is in the sidecar of its segment, in order.
        JsonAssertions.SidecarIds(await NumpyReader.DumpAsync(directory), [.. Enumerable.Range(0, 12).Select(Rows.Id)]);

        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(12, 3)), AppendMode.Overwrite, -1);
        Assert.Equal(layout.FileLength(5), new FileInfo(Path.Combine(directory, "000002.npy")).Length);
        Assert.True(store.SegmentsSnapshot[2].IsSealed);
        Assert.Equal(3, _artifacts.Logs.Count("SegmentSealed"));

        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(directory, "manifest.json")))!;
        Assert.Equal(15, (long?)manifest["rows"]);
        Assert.Equal(3, manifest["segments"]!.AsArray().Count);
    }

    [Fact]
    public async Task A_batch_larger_than_a_segment_is_split_across_several()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 4);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims, VectorDType.Float16))[VectorKind.Document];

        Assert.Equal(23, await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 23)), AppendMode.Overwrite, -1));

        Assert.Equal(6, store.SegmentCount);
        Assert.Equal(23, store.RowCount);
        Assert.Equal(Rows.Vector(22, Dims), Rows.GatherIds(store, ["r22"])[0]);
        Assert.Equal(Rows.Vector(0, Dims), Rows.GatherIds(store, ["r0"])[0]);
        var layout = new NpyLayout(Dims, VectorDType.Float16);
        Assert.Equal(store.SegmentsSnapshot.Sum(s => s.ByteCount), store.ByteCount);
        Assert.True(store.ByteCount > 6 * layout.HeaderLength + (23 * layout.RowBytes));
    }
}

internal static class JsonAssertions
{
    public static void SidecarIds(System.Text.Json.Nodes.JsonObject dump, string[] expected) =>
        Assert.Equal(expected, NumpyReader.RowsOf(dump).Select(r => r.Id).ToArray());
}
