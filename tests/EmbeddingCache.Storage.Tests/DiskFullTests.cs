using EmbeddingCache.Testing;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>A real full disk: a 2 MiB tmpfs (the tests run as root, as on CI), not a simulated error.</summary>
public sealed class DiskFullTests : IDisposable
{
    private const int Dims = 256; // 1 KiB per row
    private readonly SmallFilesystem _disk = new("2m");
    private readonly TestArtifacts _artifacts;

    public DiskFullTests(ITestOutputHelper output)
    {
        _artifacts = new TestArtifacts(output, Path.Combine(_disk.Path, "artifacts"));
    }

    public void Dispose() => _disk.Dispose();

    [Fact]
    public async Task A_full_disk_fails_the_append_commits_nothing_and_appends_resume_when_space_is_freed()
    {
        string ballast = Path.Combine(_disk.Path, "ballast");
        using (ArtifactsRoot root = _artifacts.Open(segmentRows: 100_000))
        {
            VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
            Assert.Equal(100, await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 100)), AppendMode.Overwrite, -1));
            long bytesBefore = store.ByteCount;
            _disk.Fill(ballast);

            await Assert.ThrowsAsync<StorageFullException>(async () =>
                await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(100, 50)), AppendMode.Overwrite, -1));

            Assert.Equal(100, store.RowCount);
            Assert.Equal(bytesBefore, store.ByteCount);
            Assert.Null(Rows.One(store, 100));
            Assert.Equal(Rows.Vector(99, Dims), Rows.One(store, 99));
            Assert.Equal(1, _artifacts.Logs.Count("StorageFull"));

            File.Delete(ballast);
            Assert.Equal(50, await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(100, 50)), AppendMode.Overwrite, -1));
            Assert.Equal(Rows.Vector(149, Dims), Rows.One(store, 149));
            Assert.Equal(Rows.Vector(0, Dims), Rows.GatherIds(store, ["r0"])[0]);
        }

        using (ArtifactsRoot root = _artifacts.Open(segmentRows: 100_000))
        {
            VectorStore store = root.OpenCache("mini")![VectorKind.Document];
            Assert.Equal(150, store.RowCount);
            Assert.Equal(0, _artifacts.Logs.Count("QuarantinedFile"));
            var rows = NumpyReader.RowsOf(await NumpyReader.DumpAsync(_artifacts.KindDirectory("mini", VectorKind.Document)));
            Assert.Equal([.. Enumerable.Range(0, 150).Select(Rows.Id)], rows.Select(r => r.Id));
            Assert.Equal(Rows.Vector(120, Dims), rows[120].Vector);
        }
    }

    [Fact]
    public async Task A_full_disk_when_a_new_segment_starts_leaves_no_partial_segment()
    {
        string ballast = Path.Combine(_disk.Path, "ballast");
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 10);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        Assert.Equal(10, await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 10)), AppendMode.Overwrite, -1));
        _disk.Fill(ballast);

        await Assert.ThrowsAsync<StorageFullException>(async () =>
            await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(10, 5)), AppendMode.Overwrite, -1));
        Assert.Equal(10, store.RowCount);
        var dumped = NumpyReader.RowsOf(await NumpyReader.DumpAsync(_artifacts.KindDirectory("mini", VectorKind.Query)));
        Assert.Equal(10, dumped.Count);

        File.Delete(ballast);
        Assert.Equal(5, await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(10, 5)), AppendMode.Overwrite, -1));
        Assert.Equal(Rows.Vector(14, Dims), Rows.One(store, 14));
    }
}
