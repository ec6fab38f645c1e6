using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>
/// What a snapshot builds on: a reader's committed part of each segment copied as plain files, the check that the
/// folder it read is still the current one, and the snapshot mark a copy's cache manifest carries until an Invalidate
/// empties it.
/// </summary>
public sealed class SnapshotCopyTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 4;
    private const int SegmentRows = 4;
    private readonly TestArtifacts _artifacts = new(output);
    private readonly TestArtifacts _copy = new(output);

    public void Dispose()
    {
        _artifacts.Dispose();
        _copy.Dispose();
    }

    [Fact]
    public async Task A_sealed_segment_copies_byte_for_byte_and_the_growing_one_as_its_committed_rows_only()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: SegmentRows);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 6)), AppendMode.Overwrite, -1);
        string source = _artifacts.KindDirectory("mini", VectorKind.Document);
        // An append cut short: a record past the count, as a live writer's sidecar may hold.
        File.AppendAllBytes(Path.Combine(source, "000001.keys.msgpack"), File.ReadAllBytes(Path.Combine(source, "000000.keys.msgpack"))[..20]);

        using KindFolderReader reader = KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Document);
        string target = _copy.KindDirectory("mini", VectorKind.Document);
        Directory.CreateDirectory(target);
        foreach (KindSegment segment in reader.Segments)
        {
            reader.CopyCommitted(segment, Path.Combine(target, Path.GetFileName(segment.NpyPath)), Path.Combine(target, Path.GetFileName(segment.SidecarPath)));
        }
        reader.WriteCopyManifest(Path.Combine(target, "manifest.json"));

        Assert.Equal([true, false], reader.Segments.Select(s => s.IsSealed));
        Assert.Equal(File.ReadAllBytes(Path.Combine(source, "000000.npy")), File.ReadAllBytes(Path.Combine(target, "000000.npy")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(source, "000000.keys.msgpack")), File.ReadAllBytes(Path.Combine(target, "000000.keys.msgpack")));
        var layout = new NpyLayout(Dims, VectorDType.Float32);
        byte[] growing = File.ReadAllBytes(Path.Combine(target, "000001.npy"));
        Assert.Equal(layout.FileLength(2), growing.Length);                                   // no reserve
        Assert.Equal(2, layout.TryReadCount(growing));
        Assert.Equal(File.ReadAllBytes(Path.Combine(source, "000001.npy")).AsSpan(layout.HeaderLength, 2 * layout.RowBytes).ToArray(), growing[layout.HeaderLength..]);
        Assert.Equal(new FileInfo(Path.Combine(source, "000000.keys.msgpack")).Length / 2, new FileInfo(Path.Combine(target, "000001.keys.msgpack")).Length);

        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(target, "manifest.json")))!;
        Assert.Equal(6, (long)manifest["sequence"]!);
        Assert.Equal([4, 2], manifest["segments"]!.AsArray().Select(s => (int)s!["rows"]!));
        reader.WriteSnapshotManifest(Path.Combine(_copy.Root, "embeddings", "mini", "manifest.json"), 0, 6, layout.FileLength(6) + layout.HeaderLength, DateTimeOffset.UtcNow);
        using KindFolderReader copied = KindFolderReader.Open(_copy.Root, "mini", VectorKind.Document);
        Assert.Empty(copied.Problems);
        Assert.Equal(reader.Rows().Select(r => (r.Key, r.Id)), copied.Rows().Select(r => (r.Key, r.Id)));
        Assert.Equal([true, true], copied.Segments.Select(s => s.IsSealed)); // every file of a copy holds exactly its rows
    }

    [Fact]
    public async Task A_reader_stays_unchanged_while_rows_and_segments_are_added_and_not_once_its_kind_is_invalidated()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: SegmentRows);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 3)), AppendMode.Overwrite, -1);
        using KindFolderReader reader = KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Document);

        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(3, 6)), AppendMode.Overwrite, -1); // seals one, starts two
        Assert.True(reader.IsUnchanged());
        Assert.Equal(3, reader.RowCount);

        store.Invalidate();
        await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(20, 3)), AppendMode.Overwrite, -1); // a new folder under the same name
        Assert.False(reader.IsUnchanged());
    }

    [Fact]
    public void A_reader_is_not_unchanged_once_the_cache_holds_another_model()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: SegmentRows);
        root.CreateOrOpenCache("mini", Rows.Descriptor(Dims));
        using KindFolderReader reader = KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Query); // a kind with no folder yet

        root.CreateOrOpenCache("mini", Rows.Descriptor(Dims, fingerprint: "fp-2"));

        Assert.False(reader.IsUnchanged());
    }

    [Fact]
    public async Task The_snapshot_mark_lasts_until_an_invalidate_leaves_the_cache_without_rows()
    {
        using (ArtifactsRoot root = _artifacts.Open(segmentRows: SegmentRows))
        {
            ModelCache cache = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims));
            await cache[VectorKind.Document].AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 2)), AppendMode.Overwrite, -1);
            await cache[VectorKind.Query].AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 1)), AppendMode.Overwrite, -1);
            Assert.False(cache.FromSnapshot);
        }

        using (KindFolderReader reader = KindFolderReader.Open(_artifacts.Root, "mini", VectorKind.Document))
        {
            Directory.CreateDirectory(Path.Combine(_copy.Root, "embeddings", "mini"));
            reader.WriteSnapshotManifest(Path.Combine(_copy.Root, "embeddings", "mini", "manifest.json"), 1, 2, 0, DateTimeOffset.UnixEpoch);
        }

        string manifestPath = Path.Combine(_copy.Root, "embeddings", "mini", "manifest.json");
        var snapshot = JsonNode.Parse(File.ReadAllText(manifestPath))!["snapshot"]!;
        Assert.Equal(("1970-01-01T00:00:00Z", "fp-1", 1L, 2L), ((string)snapshot["created_at"]!, (string)snapshot["source_fingerprint"]!, (long)snapshot["rows"]!["query"]!, (long)snapshot["rows"]!["document"]!));
        using ArtifactsRoot copy = _copy.Open(segmentRows: SegmentRows);
        ModelCache copied = copy.OpenCache("mini")!;
        Assert.True(copied.FromSnapshot);
        await copied[VectorKind.Query].AppendAsync(Rows.Batch(Dims, [5]), AppendMode.Overwrite, -1);

        copied.Invalidate(VectorKind.Document); // the query rows are left
        Assert.True(copied.FromSnapshot);
        Assert.NotNull(JsonNode.Parse(File.ReadAllText(manifestPath))!["snapshot"]);

        copied.Invalidate(VectorKind.Query);
        Assert.False(copied.FromSnapshot);
        Assert.Null(JsonNode.Parse(File.ReadAllText(manifestPath))!["snapshot"]);
    }
}
