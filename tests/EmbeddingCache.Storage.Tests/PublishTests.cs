using System.Diagnostics;
using System.Text.Json.Nodes;
using EmbeddingCache.Testing;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>What the writer publishes for followers: the kind manifest's generation and sequence, the swap, the retention.</summary>
public sealed class PublishTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 8;
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    [Fact]
    public async Task The_kind_manifest_publishes_the_committed_rows_of_a_burst_within_the_interval()
    {
        using ArtifactsRoot root = _artifacts.Open(segmentRows: 4, publishIntervalMs: 200);
        VectorStore queries = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        long generation = queries.Generation;
        var published = Stopwatch.StartNew();
        for (int i = 0; i < 10; i++)
        {
            await queries.AppendAsync(Rows.Batch(Dims, [i]), AppendMode.Overwrite, -1);
        }

        // The last rows come after the interval's first publish: the quiet-period publish must carry them.
        await Wait.UntilAsync(() => Manifest()?["sequence"]?.GetValue<long>() == 10, "the manifest to publish 10 rows", TimeSpan.FromSeconds(10));
        Assert.InRange(published.ElapsedMilliseconds, 0, 5_000);
        JsonNode manifest = Manifest()!;
        Assert.Equal(generation, manifest["generation"]!.GetValue<long>());
        Assert.Equal([4, 4, 2], manifest["segments"]!.AsArray().Select(s => s!["rows"]!.GetValue<int>()));
        Assert.Equal([true, true, false], manifest["segments"]!.AsArray().Select(s => s!["sealed"]!.GetValue<bool>()));
    }

    [Fact]
    public async Task The_generation_survives_a_reopen_and_grows_on_every_invalidation()
    {
        long first;
        long second;
        using (ArtifactsRoot root = _artifacts.Open())
        {
            VectorStore queries = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
            await queries.AppendAsync(Rows.Batch(Dims, [1, 2]), AppendMode.Overwrite, -1);
            first = queries.Generation;
            root.OpenCache("mini")!.Invalidate(VectorKind.Query);
            second = queries.Generation;
            Assert.True(second > first);
            Assert.Equal(second, Manifest()!["generation"]!.GetValue<long>());
            Assert.Equal(0, Manifest()!["sequence"]!.GetValue<long>());
            await queries.AppendAsync(Rows.Batch(Dims, [3]), AppendMode.Overwrite, -1);
        }

        using (ArtifactsRoot root = _artifacts.Open())
        {
            Assert.Equal(second, root.OpenCache("mini")![VectorKind.Query].Generation);
        }
    }

    [Fact]
    public async Task A_crash_between_the_two_renames_of_an_invalidation_never_takes_the_generation_backwards()
    {
        long generation;
        using (ArtifactsRoot root = _artifacts.Open())
        {
            VectorStore queries = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
            await queries.AppendAsync(Rows.Batch(Dims, [1]), AppendMode.Overwrite, -1);
            generation = queries.Generation;
        }

        // What the first rename leaves: the kind folder renamed aside, no new folder in place.
        string modelDirectory = Path.Combine(_artifacts.Root, "embeddings", "mini");
        Directory.Move(_artifacts.KindDirectory("mini", VectorKind.Query), Path.Combine(modelDirectory, $".trash-query-{generation}-{DateTime.UtcNow.Ticks}"));
        Directory.CreateDirectory(Path.Combine(modelDirectory, $".new-query-{generation + 1}"));

        using (ArtifactsRoot root = _artifacts.Open())
        {
            VectorStore queries = root.OpenCache("mini")![VectorKind.Query];
            Assert.True(queries.Generation > generation);
            Assert.Equal(0, queries.RowCount);
            Assert.Empty(Directory.GetDirectories(modelDirectory, ".new-*"));
            Assert.Single(Directory.GetDirectories(modelDirectory, ".trash-query-*")); // younger than the retention
        }
    }

    [Fact]
    public async Task An_invalidated_generation_is_kept_for_the_retention_then_deleted()
    {
        using ArtifactsRoot root = _artifacts.Open(retentionSeconds: 1);
        ModelCache cache = root.CreateOrOpenCache("mini", Rows.Descriptor(Dims));
        await cache[VectorKind.Document].AppendAsync(Rows.Batch(Dims, [1]), AppendMode.Overwrite, -1);
        var invalidated = Stopwatch.StartNew();
        cache.Invalidate(VectorKind.Document);
        string modelDirectory = Path.Combine(root.EmbeddingsDirectory, "mini");
        string trash = Assert.Single(Directory.GetDirectories(modelDirectory, ".trash-document-*"));
        Assert.True(File.Exists(Path.Combine(trash, "000000.npy")));

        await Wait.UntilAsync(() => !Directory.Exists(trash), "the trash folder to be deleted after the retention", TimeSpan.FromSeconds(30));
        Assert.True(invalidated.Elapsed >= TimeSpan.FromSeconds(0.9), $"deleted after {invalidated.Elapsed}, before the 1 s retention");
    }

    private JsonNode? Manifest()
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(Path.Combine(_artifacts.KindDirectory("mini", VectorKind.Query), "manifest.json")));
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }
}
