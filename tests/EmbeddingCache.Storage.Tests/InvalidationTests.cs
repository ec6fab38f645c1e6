using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

public sealed class InvalidationTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 8;
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    [Fact]
    public async Task Invalidate_removes_the_rows_of_one_kind_and_changes_the_generation()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 4);
        ModelCache cache = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims));
        VectorStore queries = cache[VectorKind.Query];
        await queries.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 10)), AppendMode.Overwrite, -1);
        await cache[VectorKind.Document].AppendAsync(Rows.Batch(Dims, [1]), AppendMode.Overwrite, -1);
        long generation = queries.Generation;
        long bytes = queries.ByteCount;

        InvalidationResult result = cache.Invalidate(VectorKind.Query);

        Assert.Equal(new InvalidationResult(10, bytes), result);
        Assert.NotEqual(generation, queries.Generation);
        Assert.Equal(0, queries.RowCount);
        Assert.Equal(0, queries.ByteCount);
        Assert.Null(Rows.One(queries, 3));
        Assert.Null(Rows.GatherIds(queries, ["r3"])[0]);
        Assert.Equal(Rows.Vector(1, Dims), Rows.One(cache[VectorKind.Document], 1));
        string directory = _artifacts.KindDirectory("mini", VectorKind.Query);
        Assert.Empty(Directory.GetFiles(directory, "*.npy"));
        Assert.Single(Directory.GetDirectories(Path.Combine(root.EmbeddingsDirectory, "mini"), ".trash-query-*")); // kept for followers
        Assert.Single(_artifacts.Logs.Events("CacheInvalidated"));

        // The old generation writes nothing; the new one, or "current", does.
        Assert.Equal(0, await queries.AppendAsync(Rows.Batch(Dims, [1]), AppendMode.Overwrite, generation));
        Assert.Null(Rows.One(queries, 1));
        Assert.Equal(1, await queries.AppendAsync(Rows.Batch(Dims, [2]), AppendMode.Overwrite, queries.Generation));
        Assert.Equal(1, await queries.AppendAsync(Rows.Batch(Dims, [3]), AppendMode.Overwrite, -1));
        Assert.Equal(Rows.Vector(2, Dims), Rows.One(queries, 2));

        InvalidationResult both = cache.Invalidate(null);
        Assert.Equal(3, both.RowsRemoved);
        Assert.Equal(0, cache[VectorKind.Document].RowCount);
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(root.EmbeddingsDirectory, "mini", "manifest.json")))!;
        Assert.Equal(0, (long?)manifest["counts"]!["query"]);
        Assert.Equal(0, (long?)manifest["counts"]!["document"]);
    }

    [Fact]
    public async Task An_append_queued_before_an_invalidation_writes_nothing_into_the_new_generation()
    {
        using ArtifactsRoot root = _artifacts.Open();
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        long generation = store.Generation;
        ValueTask<int> stale;
        lock (store.WriteGate)
        {
            stale = store.AppendAsync(Rows.Batch(Dims, [1]), AppendMode.Overwrite, generation);
            store.Invalidate(); // same thread: the gate is re-entrant
        }

        Assert.Equal(0, await stale);
        Assert.Equal(0, store.RowCount);
        Assert.Null(Rows.One(store, 1));
    }

    [Theory]
    [InlineData(DurabilityMode.None, 30)]
    [InlineData(DurabilityMode.GroupCommit, 10)]
    public async Task Reads_during_invalidation_see_old_rows_or_none_and_never_fail(DurabilityMode durability, int rounds)
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 16, durability: durability);
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
        ContentKey[] keys = [.. Enumerable.Range(0, 64).Select(Rows.Key)];
        using var stop = new CancellationTokenSource();
        long reads = 0;
        long hits = 0;

        Task reader = Task.Factory.StartNew(() =>
        {
            byte[] buffer = new byte[keys.Length * Dims * 4];
            bool[] found = new bool[keys.Length];
            while (!stop.IsCancellationRequested)
            {
                hits += store.Gather(keys, VectorDType.Float32, buffer, found);
                ReadOnlySpan<float> floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(buffer);
                for (int i = 0; i < keys.Length; i++)
                {
                    // Any row found is the right vector of its key, whatever the generation.
                    float expected = found[i] ? i : 0;
                    if (floats[i * Dims] != expected || floats[(i * Dims) + Dims - 1] != (found[i] ? i + ((Dims - 1) / 8f) : 0))
                    {
                        throw new InvalidOperationException($"key {i} read {floats[i * Dims]}");
                    }
                }

                reads++;
            }
        }, TaskCreationOptions.LongRunning); // its own thread: a spinning reader must not starve the pool

        for (int round = 0; round < rounds; round++)
        {
            await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 64)), AppendMode.Overwrite, -1);
            store.Invalidate();
        }

        await stop.CancelAsync();
        await reader; // rethrows anything the reader hit
        Assert.True(reads > 0);
        Assert.Equal(0, store.RowCount);
        Assert.Equal(rounds, _artifacts.Logs.Count("CacheInvalidated"));
    }

    [Fact]
    public async Task Leftover_trash_from_a_crash_is_deleted_on_open()
    {
        using (ArtifactsRoot root = _artifacts.Open())
        {
            root.CreateOrOpenCache("mini", Rows.Descriptor(Dims));
        }

        string trash = Path.Combine(_artifacts.Root, "embeddings", "mini", ".trash-query-1-123");
        Directory.CreateDirectory(trash);
        await File.WriteAllBytesAsync(Path.Combine(trash, "000000.npy"), new byte[10]);

        using (ArtifactsRoot root = _artifacts.Open())
        {
            Assert.NotNull(root.OpenCache("mini"));
            Assert.False(Directory.Exists(trash));
        }
    }
}
