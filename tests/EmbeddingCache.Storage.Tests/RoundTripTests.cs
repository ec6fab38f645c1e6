using System.Runtime.InteropServices;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

public sealed class RoundTripTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 8;
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    [Fact]
    public void ContentKey_is_the_first_16_bytes_of_sha256_big_endian()
    {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223 b00361a3...
        ContentKey key = ContentKey.FromText("abc");
        Assert.Equal("ba7816bf8f01cfea414140de5dae2223", key.ToString());
        Assert.Equal(0xba7816bf8f01cfeaUL, key.High);
        byte[] bytes = new byte[16];
        key.WriteTo(bytes);
        Assert.Equal(Convert.FromHexString("ba7816bf8f01cfea414140de5dae2223"), bytes);
        Assert.Equal(key, ContentKey.ReadFrom(bytes));
        Assert.Equal(ContentKey.FromText(new string('é', 1000)), ContentKey.FromText(new string('é', 1000)));
        Assert.NotEqual(ContentKey.FromText("abc "), key);
    }

    [Fact]
    public async Task Appended_rows_are_read_back_by_key_and_id()
    {
        using ArtifactsRoot root = _artifacts.Open();
        Assert.True(Directory.Exists(root.ModelsDirectory));
        Assert.True(Directory.Exists(root.LogsDirectory));
        ModelCache cache = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims));
        VectorStore store = cache[VectorKind.Document];

        Assert.Equal(20, await store.AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 20)), AppendMode.Overwrite, -1));

        Assert.Equal(20, store.RowCount);
        float[]?[] byKey = Rows.GatherKeys(store, [Rows.Key(3), Rows.Key(99), Rows.Key(19)]);
        Assert.Equal(Rows.Vector(3, Dims), byKey[0]);
        Assert.Null(byKey[1]);
        Assert.Equal(Rows.Vector(19, Dims), byKey[2]);
        float[]?[] byId = Rows.GatherIds(store, ["r7", "nope", "r0"]);
        Assert.Equal(Rows.Vector(7, Dims), byId[0]);
        Assert.Null(byId[1]);
        Assert.Equal(Rows.Vector(0, Dims), byId[2]);
        Assert.NotNull(Rows.One(store, 5));
        Assert.Null(Rows.One(store, 20));
        Assert.Equal(0, cache[VectorKind.Query].RowCount);
        Assert.Same(cache, root.OpenCache("mini"));
        Assert.Equal(["mini"], root.ListCaches());
    }

    [Fact]
    public async Task Gather_returns_the_hit_count_and_zero_fills_misses()
    {
        using ArtifactsRoot root = _artifacts.Open();
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        await store.AppendAsync(Rows.Batch(Dims, [1]), AppendMode.Overwrite, -1);

        byte[] destination = Enumerable.Repeat((byte)0xAB, 2 * Dims * 4).ToArray();
        bool[] found = [true, true];
        int hits = store.Gather([Rows.Key(2), Rows.Key(1)], VectorDType.Float32, destination, found);

        Assert.Equal(1, hits);
        Assert.Equal([false, true], found);
        Assert.All(destination.AsSpan(0, Dims * 4).ToArray(), b => Assert.Equal(0, b));
        Assert.Throws<ArgumentException>(() => store.Gather([Rows.Key(1)], VectorDType.Float32, new byte[(Dims * 4) - 1], new bool[1]));
    }

    [Theory]
    [InlineData(VectorDType.Float32, VectorDType.Float16)]
    [InlineData(VectorDType.Float16, VectorDType.Float32)]
    [InlineData(VectorDType.Float16, VectorDType.Float16)]
    public async Task Vectors_are_converted_between_storage_and_output_types(VectorDType storage, VectorDType outputType)
    {
        using ArtifactsRoot root = _artifacts.Open();
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims, storage))[VectorKind.Query];
        Assert.Equal(storage, store.DType);
        await store.AppendAsync(Rows.Batch(Dims, [5, 200]), AppendMode.Overwrite, -1);

        int elementSize = outputType == VectorDType.Float16 ? 2 : 4;
        byte[] destination = new byte[2 * Dims * elementSize];
        bool[] found = new bool[2];
        Assert.Equal(2, store.Gather([Rows.Key(5), Rows.Key(200)], outputType, destination, found));

        float[] actual = outputType == VectorDType.Float16
            ? MemoryMarshal.Cast<byte, Half>(destination).ToArray().Select(h => (float)h).ToArray()
            : MemoryMarshal.Cast<byte, float>(destination).ToArray();
        Assert.Equal([.. Rows.Vector(5, Dims), .. Rows.Vector(200, Dims)], actual); // all exact in float16
    }

    [Fact]
    public async Task IfAbsent_skips_stored_keys_unless_the_id_points_elsewhere()
    {
        using ArtifactsRoot root = _artifacts.Open();
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
        ContentKey key = Rows.Key(1);
        var first = new RowBatch(Dims, 1);
        first.Add(key, "a", Rows.Vector(1, Dims));
        Assert.Equal(1, await store.AppendAsync(first, AppendMode.IfAbsent, -1));

        var sameKeySameId = new RowBatch(Dims, 1);
        sameKeySameId.Add(key, "a", Rows.Vector(2, Dims));
        Assert.Equal(0, await store.AppendAsync(sameKeySameId, AppendMode.IfAbsent, -1));
        Assert.Equal(Rows.Vector(1, Dims), Rows.GatherKeys(store, [key])[0]);

        var sameKeyNoId = new RowBatch(Dims, 1);
        sameKeyNoId.Add(key, null, Rows.Vector(2, Dims));
        Assert.Equal(0, await store.AppendAsync(sameKeyNoId, AppendMode.IfAbsent, -1));

        var sameKeyOtherId = new RowBatch(Dims, 1);
        sameKeyOtherId.Add(key, "b", Rows.Vector(3, Dims));
        Assert.Equal(1, await store.AppendAsync(sameKeyOtherId, AppendMode.IfAbsent, -1));
        Assert.Equal(Rows.Vector(3, Dims), Rows.GatherIds(store, ["b"])[0]);
        Assert.Equal(Rows.Vector(3, Dims), Rows.GatherKeys(store, [key])[0]);

        var idOnly = new RowBatch(Dims, 1);
        idOnly.Add(null, "b", Rows.Vector(4, Dims));
        Assert.Equal(0, await store.AppendAsync(idOnly, AppendMode.IfAbsent, -1));

        // Duplicates inside one batch: the first is written, the repeat is skipped.
        var repeated = new RowBatch(Dims, 2);
        repeated.Add(Rows.Key(9), null, Rows.Vector(9, Dims));
        repeated.Add(Rows.Key(9), null, Rows.Vector(10, Dims));
        Assert.Equal(1, await store.AppendAsync(repeated, AppendMode.IfAbsent, -1));
        Assert.Equal(Rows.Vector(9, Dims), Rows.One(store, 9));

        var overwrite = new RowBatch(Dims, 1);
        overwrite.Add(key, "a", Rows.Vector(5, Dims));
        Assert.Equal(1, await store.AppendAsync(overwrite, AppendMode.Overwrite, -1));
        Assert.Equal(Rows.Vector(5, Dims), Rows.GatherKeys(store, [key])[0]);
        Assert.Equal(Rows.Vector(5, Dims), Rows.GatherIds(store, ["a"])[0]);
        Assert.Equal(4, store.RowCount); // superseded rows stay counted
    }

    [Fact]
    public async Task The_newest_write_of_an_id_wins_across_batches_and_within_one()
    {
        using ArtifactsRoot root = _artifacts.Open();
        VectorStore store = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
        var first = new RowBatch(Dims, 1);
        first.Add(Rows.Key(1), "doc", Rows.Vector(1, Dims));
        await store.AppendAsync(first, AppendMode.Overwrite, -1);
        var second = new RowBatch(Dims, 2);
        second.Add(Rows.Key(2), "doc", Rows.Vector(2, Dims));
        second.Add(null, "doc", Rows.Vector(3, Dims));
        await store.AppendAsync(second, AppendMode.Overwrite, -1);

        Assert.Equal(Rows.Vector(3, Dims), Rows.GatherIds(store, ["doc"])[0]);
        Assert.Equal(Rows.Vector(1, Dims), Rows.One(store, 1)); // the old key still reads its own row
        Assert.Equal(1, store.IdCount);
    }

    [Fact]
    public async Task Reopening_after_dispose_gives_the_same_rows()
    {
        using (ArtifactsRoot root = _artifacts.Open(segmentRows: 7))
        {
            ModelCache cache = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims, VectorDType.Float16) with { StoreOnly = true, Fingerprint = "" });
            await cache[VectorKind.Document].AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 30)), AppendMode.Overwrite, -1);
            await cache[VectorKind.Document].AppendAsync(Rows.Batch(Dims, [4], offset: 0.5f), AppendMode.Overwrite, -1);
            await cache[VectorKind.Query].AppendAsync(Rows.Batch(Dims, [1, 2], withIds: false), AppendMode.Overwrite, -1);
        }

        using (ArtifactsRoot root = _artifacts.Open(segmentRows: 7))
        {
            ModelCache cache = root.OpenCache("mini")!;
            Assert.NotNull(cache);
            Assert.Equal(VectorDType.Float16, cache.DType);
            Assert.True(cache.StoreOnly);
            Assert.Equal("", cache.Fingerprint);
            VectorStore documents = cache[VectorKind.Document];
            Assert.Equal(31, documents.RowCount);
            for (int n = 0; n < 30; n++)
            {
                Assert.Equal(Rows.Vector(n, Dims, n == 4 ? 0.5f : 0), Rows.One(documents, n));
                Assert.Equal(Rows.Vector(n, Dims, n == 4 ? 0.5f : 0), Rows.GatherIds(documents, [Rows.Id(n)])[0]);
            }

            Assert.Equal(2, cache[VectorKind.Query].RowCount);
            Assert.Equal(Rows.Vector(2, Dims), Rows.One(cache[VectorKind.Query], 2));
            Assert.Equal(0, _artifacts.Logs.Count("SegmentTailTruncated"));
            Assert.Equal(0, _artifacts.Logs.Count("QuarantinedFile"));

            // And appends continue after the recovered rows.
            await documents.AppendAsync(Rows.Batch(Dims, [100]), AppendMode.Overwrite, -1);
            Assert.Equal(Rows.Vector(100, Dims), Rows.One(documents, 100));
        }
    }

    [Fact]
    public void Manifest_records_what_the_cache_holds()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 1000);
        root.CreateOrOpenCache("mini", Rows.Descriptor(Dims, VectorDType.Float16, "abc123") with { HuggingFaceUrl = "https://huggingface.co/x/y" });
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(root.EmbeddingsDirectory, "mini", "manifest.json")))!;

        Assert.Equal("mini", (string?)manifest["model_name"]);
        Assert.Equal("test/base", (string?)manifest["base_model"]);
        Assert.Equal("https://huggingface.co/x/y", (string?)manifest["huggingface_url"]);
        Assert.Equal(Dims, (int?)manifest["dims"]);
        Assert.Equal("<f2", (string?)manifest["dtype"]);
        Assert.Equal("abc123", (string?)manifest["fingerprint"]);
        Assert.Equal(1, (int?)manifest["format_version"]);
        Assert.Equal(1000, (int?)manifest["segment_rows"]);
        Assert.False((bool?)manifest["store_only"]);
        Assert.Equal(0, (long?)manifest["counts"]!["query"]);
        Assert.NotNull((double?)manifest["size_mb"]);
        Assert.EndsWith("Z", (string?)manifest["created_at"]);
        Assert.EndsWith("Z", (string?)manifest["updated_at"]);
        Assert.True(File.Exists(Path.Combine(root.EmbeddingsDirectory, "mini", "query", "manifest.json")));
    }

    [Fact]
    public async Task A_changed_fingerprint_drops_the_vectors_and_rewrites_the_manifest()
    {
        using ArtifactsRoot root = _artifacts.Open();
        ModelCache cache = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims, fingerprint: "old"));
        await cache[VectorKind.Query].AppendAsync(Rows.Batch(Dims, [1, 2, 3]), AppendMode.Overwrite, -1);
        long generation = cache[VectorKind.Query].Generation;

        Assert.Same(cache, root.CreateOrOpenCache("mini", Rows.Descriptor(Dims, fingerprint: "old")));
        Assert.Equal(3, cache[VectorKind.Query].RowCount);

        ModelCache changed = root.CreateOrOpenCache("mini", Rows.Descriptor(6, fingerprint: "new"));
        Assert.Same(cache, changed);
        Assert.Equal("new", cache.Fingerprint);
        Assert.Equal(6, cache.Dims);
        Assert.Equal(6, cache[VectorKind.Query].Dims);
        Assert.Equal(0, cache[VectorKind.Query].RowCount);
        Assert.NotEqual(generation, cache[VectorKind.Query].Generation);
        Assert.Null(Rows.One(cache[VectorKind.Query], 1));
        LogEntry log = Assert.Single(_artifacts.Logs.Events("FingerprintChanged"));
        Assert.Contains("'old' -> 'new'", log.Message);

        await cache[VectorKind.Query].AppendAsync(Rows.Batch(6, [1]), AppendMode.Overwrite, -1);
        Assert.Equal(Rows.Vector(1, 6), Rows.One(cache[VectorKind.Query], 1));
        await Assert.ThrowsAsync<ArgumentException>(async () => await cache[VectorKind.Query].AppendAsync(Rows.Batch(Dims, [2]), AppendMode.Overwrite, -1));
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(root.EmbeddingsDirectory, "mini", "manifest.json")))!;
        Assert.Equal("new", (string?)manifest["fingerprint"]);
        Assert.Equal(6, (int?)manifest["dims"]);
    }

    [Theory]
    [InlineData("")]
    [InlineData("..")]
    [InlineData("a/b")]
    [InlineData(".hidden")]
    [InlineData("a..b")]
    public void Bad_model_names_are_refused(string name)
    {
        using ArtifactsRoot root = _artifacts.Open();
        Assert.Throws<ArgumentException>(() => root.CreateOrOpenCache(name, Rows.Descriptor(Dims)));
        Assert.Throws<ArgumentException>(() => root.OpenCache(name));
    }

    [Fact]
    public void Unknown_cache_is_null()
    {
        using ArtifactsRoot root = _artifacts.Open();
        Assert.Null(root.OpenCache("absent"));
        Assert.Empty(root.ListCaches());
    }
}
