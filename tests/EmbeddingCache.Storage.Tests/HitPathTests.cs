using EmbeddingCache.Testing;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>What the hit path costs: index memory per row and allocation per gather (issue 5).</summary>
public sealed class HitPathTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 8;
    private const int Rows = 20_000;
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    [Fact]
    public async Task Both_indexes_cost_under_64_bytes_a_row_on_open_and_after_growth()
    {
        using (ArtifactsRoot root = _artifacts.Open(segmentRows: 4096, durability: DurabilityMode.None))
        {
            VectorStore store = root.CreateOrOpenCache("mini", Tests.Rows.Descriptor(Dims))[VectorKind.Document];
            await store.AppendAsync(Tests.Rows.Batch(Dims, Enumerable.Range(0, Rows)), AppendMode.Overwrite, -1);
            AssertUnder64BytesPerRow(store, "after appends");
        }

        using (ArtifactsRoot root = _artifacts.Open(segmentRows: 4096, durability: DurabilityMode.None))
        {
            VectorStore store = root.OpenCache("mini")![VectorKind.Document];
            AssertUnder64BytesPerRow(store, "on open");

            // Opened at the highest load, the first append grows both tables: the emptiest they get.
            await store.AppendAsync(Tests.Rows.Batch(Dims, [Rows]), AppendMode.Overwrite, -1);
            AssertUnder64BytesPerRow(store, "after the first append grew the tables");
            Assert.Equal(Tests.Rows.Vector(Rows, Dims), Tests.Rows.GatherIds(store, [Tests.Rows.Id(Rows)])[0]);
        }
    }

    [Fact]
    public async Task A_cache_of_ids_with_a_few_texts_at_the_end_opens_with_an_index_sized_for_what_each_table_holds()
    {
        const int KeyedRows = 500;
        using (ArtifactsRoot root = _artifacts.Open(segmentRows: 4096, durability: DurabilityMode.None))
        {
            VectorStore store = root.CreateOrOpenCache("mini", Tests.Rows.Descriptor(Dims))[VectorKind.Document];
            await store.AppendAsync(Tests.Rows.Batch(Dims, Enumerable.Range(0, Rows), withKeys: false), AppendMode.Overwrite, -1);
            await store.AppendAsync(Tests.Rows.Batch(Dims, Enumerable.Range(Rows, KeyedRows), withIds: false), AppendMode.Overwrite, -1);
        }

        using (ArtifactsRoot root = _artifacts.Open(segmentRows: 4096, durability: DurabilityMode.None))
        {
            VectorStore store = root.OpenCache("mini")![VectorKind.Document];
            Assert.Equal((Rows, KeyedRows), (store.IdCount, store.KeyCount));

            // Sizing the text index for every row of the cache, as if all were keyed, would double the bytes.
            double perRow = (double)store.IndexBytes / (Rows + KeyedRows);
            output.WriteLine($"{store.IndexBytes} index bytes for {Rows} ids and {KeyedRows} texts = {perRow:F1} per row");
            Assert.True(perRow < 40, $"{perRow:F1} index bytes per row");
            Assert.Equal(Tests.Rows.Vector(Rows + 1, Dims), Tests.Rows.One(store, Rows + 1));
            Assert.Equal(Tests.Rows.Vector(7, Dims), Tests.Rows.GatherIds(store, [Tests.Rows.Id(7)])[0]);
        }
    }

    [Theory]
    [InlineData(VectorDType.Float32, VectorDType.Float32)]
    [InlineData(VectorDType.Float32, VectorDType.Float16)]
    [InlineData(VectorDType.Float16, VectorDType.Float32)]
    public async Task Gathering_rows_by_key_and_by_id_allocates_nothing(VectorDType storage, VectorDType output)
    {
        const int Count = 1000;
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 256, durability: DurabilityMode.None);
        VectorStore store = root.CreateOrOpenCache("mini", Tests.Rows.Descriptor(Dims, storage))[VectorKind.Document];
        await store.AppendAsync(Tests.Rows.Batch(Dims, Enumerable.Range(0, Count)), AppendMode.Overwrite, -1);
        ContentKey[] keys = [.. Enumerable.Range(0, Count).Select(n => Tests.Rows.Key((n * 7) % (Count + 10)))]; // some misses
        string[] ids = [.. Enumerable.Range(0, Count).Select(n => Tests.Rows.Id((n * 7) % (Count + 10)))];
        byte[] destination = new byte[Count * Dims * 4];
        bool[] found = new bool[Count];

        // Warm up: tiered JIT and the first touch of every mapping allocate; a steady-state gather must not.
        for (int warm = 0; warm < 3; warm++)
        {
            store.Gather(keys, output, destination, found);
            store.GatherByIds(ids, output, destination, found);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        int byKey = store.Gather(keys, output, destination, found);
        int byId = store.GatherByIds(ids, output, destination, found);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(byKey, byId);
        Assert.InRange(byKey, Count - 10, Count - 1);
    }

    [Fact]
    public async Task Pages_are_warmed_in_the_background_after_open_and_the_log_says_how_many_bytes()
    {
        using (ArtifactsRoot root = _artifacts.Open(segmentRows: 1024, durability: DurabilityMode.None))
        {
            VectorStore store = root.CreateOrOpenCache("mini", Tests.Rows.Descriptor(Dims))[VectorKind.Document];
            await store.AppendAsync(Tests.Rows.Batch(Dims, Enumerable.Range(0, 3000)), AppendMode.Overwrite, -1);
        }

        Assert.Equal(0, _artifacts.Logs.Count("CacheWarmingStarted")); // a cache created in this process is already in memory
        using (ArtifactsRoot root = _artifacts.Open(segmentRows: 1024, durability: DurabilityMode.None))
        {
            VectorStore store = root.OpenCache("mini")![VectorKind.Document];
            await Wait.UntilAsync(() => _artifacts.Logs.Count("CacheWarmed") > 0, "the reopened cache to log CacheWarmed");

            LogEntry warmed = Assert.Single(_artifacts.Logs.Events("CacheWarmed"));
            Assert.Contains($"{store.Generations.Current.WarmableBytes} bytes", warmed.Message, StringComparison.Ordinal);
            string[] order = [.. _artifacts.Logs.Entries.Select(e => e.EventName ?? "").Where(n => n is "CacheOpened" or "CacheWarmingStarted" or "CacheWarmed")];
            Assert.Equal(["CacheOpened", "CacheWarmingStarted", "CacheWarmed"], order);
        }
    }

    private void AssertUnder64BytesPerRow(VectorStore store, string when)
    {
        Assert.Equal(store.KeyCount, store.IdCount);
        double perRow = (double)store.IndexBytes / store.KeyCount;
        output.WriteLine($"{when}: {store.IndexBytes} index bytes for {store.KeyCount} rows = {perRow:F1} per row");
        Assert.True(perRow < 64, $"{when}: {perRow:F1} index bytes per row");
    }
}
