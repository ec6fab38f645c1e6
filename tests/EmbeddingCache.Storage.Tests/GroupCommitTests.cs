using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

public sealed class GroupCommitTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 8;
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    [Fact]
    public async Task Concurrent_appends_all_complete_and_every_row_is_readable()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 97);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];

        const int Appends = 64;
        const int RowsEach = 13;
        Task<int>[] appends = [.. Enumerable.Range(0, Appends).Select(a => Task.Run(async () =>
            await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(a * RowsEach, RowsEach)), AppendMode.Overwrite, -1)))];
        int[] written = await Task.WhenAll(appends);

        Assert.All(written, w => Assert.Equal(RowsEach, w));
        Assert.Equal(Appends * RowsEach, store.RowCount);
        float[]?[] all = Rows.GatherIds(store, [.. Enumerable.Range(0, Appends * RowsEach).Select(Rows.Id)]);
        for (int n = 0; n < all.Length; n++)
        {
            Assert.Equal(Rows.Vector(n, Dims), all[n]);
        }

        Assert.InRange(store.CommitGroups, 1, Appends);
    }

    [Fact]
    public async Task Appends_queued_while_a_group_is_written_are_committed_together()
    {
        using ArtifactsRoot root = _artifacts.Open();
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        long groupsBefore = store.CommitGroups;

        var appends = new List<Task<int>>();
        lock (store.WriteGate)
        {
            // The writer cannot commit while the gate is held: every append queues up behind it.
            for (int a = 0; a < 32; a++)
            {
                appends.Add(store.AppendAsync(Rows.Batch(Dims, [a]), AppendMode.Overwrite, -1).AsTask());
            }

            Assert.All(appends, t => Assert.False(t.IsCompleted));
        }

        await Task.WhenAll(appends);

        // The writer drained one or more appends before it blocked; everything after came in one group.
        Assert.InRange(store.CommitGroups - groupsBefore, 1, 2);
        Assert.Equal(32, store.RowCount);
        Assert.Equal(Rows.Vector(31, Dims), Rows.One(store, 31));
    }

    [Fact]
    public async Task An_append_completes_only_once_its_rows_are_visible()
    {
        using ArtifactsRoot root = _artifacts.Open(durability: DurabilityMode.None);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        for (int n = 0; n < 200; n++)
        {
            await store.AppendAsync(Rows.Batch(Dims, [n]), AppendMode.IfAbsent, -1);
            Assert.NotNull(Rows.One(store, n));
        }
    }

    [Fact]
    public async Task Dispose_finishes_queued_appends_and_later_appends_are_refused()
    {
        ArtifactsRoot root = _artifacts.Open();
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        Task<int>[] appends = [.. Enumerable.Range(0, 10).Select(n => store.AppendAsync(Rows.Batch(Dims, [n]), AppendMode.Overwrite, -1).AsTask())];
        root.Dispose();

        Assert.All(await Task.WhenAll(appends), w => Assert.Equal(1, w));
        Assert.Throws<ObjectDisposedException>(() => store.AppendAsync(Rows.Batch(Dims, [99]), AppendMode.Overwrite, -1));
        Assert.Throws<ObjectDisposedException>(() => Rows.One(store, 1));

        using ArtifactsRoot reopened = _artifacts.Open();
        Assert.Equal(10, reopened.OpenCache("mini")![VectorKind.Query].RowCount);
    }
}
