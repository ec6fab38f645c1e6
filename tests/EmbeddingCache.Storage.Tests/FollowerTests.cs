using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>
/// The follower's poller over a writer in this process: each test polls by hand (the follower's own timer is set to an
/// hour) so that every step is deterministic, and the writer publishes after every commit.
/// </summary>
public sealed class FollowerTests(ITestOutputHelper output) : IDisposable
{
    private const int Dims = 8;
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    [Fact]
    public async Task New_rows_new_segments_and_sealed_segments_are_served_after_a_poll()
    {
        using ArtifactsRoot writer = _artifacts.Open(segmentRows: 4, publishIntervalMs: 0);
        VectorStore written = writer.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        await written.AppendAsync(Rows.Batch(Dims, [0, 1, 2]), AppendMode.Overwrite, -1);

        using ArtifactsRoot follower = OpenFollower();
        ModelCache cache = follower.OpenCache("mini")!;
        VectorStore followed = cache[VectorKind.Query];
        Assert.Equal(written.Generation, followed.Generation);
        Assert.Equal(3, followed.RowCount);
        Assert.Equal(Rows.Vector(2, Dims), Rows.One(followed, 2));
        Assert.Null(Rows.One(followed, 3));

        await written.AppendAsync(Rows.Batch(Dims, [3, 4, 5]), AppendMode.Overwrite, -1); // seals segment 0, starts segment 1
        Assert.Null(Rows.One(followed, 4)); // not before a poll
        cache.Poll();
        Assert.Equal(6, followed.RowCount);
        Assert.Equal([true, false], followed.SegmentsSnapshot.Select(segment => segment.IsSealed));
        for (int n = 0; n < 6; n++)
        {
            Assert.Equal(Rows.Vector(n, Dims), Rows.One(followed, n));
            Assert.Equal(Rows.Vector(n, Dims), Rows.GatherIds(followed, [Rows.Id(n)])[0]);
        }

        // A newer write of a key wins on the follower too.
        await written.AppendAsync(Rows.Batch(Dims, [1], offset: 100), AppendMode.Overwrite, -1);
        cache.Poll();
        Assert.Equal(Rows.Vector(1, Dims, offset: 100), Rows.One(followed, 1));
        Assert.Equal(written.Generation, followed.Generation);
    }

    [Fact]
    public async Task An_invalidation_is_swapped_in_whole_and_old_rows_go()
    {
        using ArtifactsRoot writer = _artifacts.Open(segmentRows: 4, publishIntervalMs: 0);
        ModelCache writerCache = writer.CreateOrOpenCache("mini", Rows.Descriptor(Dims));
        await writerCache[VectorKind.Document].AppendAsync(Rows.Batch(Dims, Enumerable.Range(0, 6)), AppendMode.Overwrite, -1);
        using ArtifactsRoot follower = OpenFollower();
        ModelCache cache = follower.OpenCache("mini")!;
        VectorStore followed = cache[VectorKind.Document];
        long before = followed.Generation;
        Assert.Equal(6, followed.RowCount);

        writerCache.Invalidate(VectorKind.Document);
        await writerCache[VectorKind.Document].AppendAsync(Rows.Batch(Dims, [7]), AppendMode.Overwrite, -1);
        cache.Poll();

        Assert.Equal(writerCache[VectorKind.Document].Generation, followed.Generation);
        Assert.NotEqual(before, followed.Generation);
        Assert.Equal(1, followed.RowCount);
        Assert.Null(Rows.One(followed, 3));
        Assert.Equal(Rows.Vector(7, Dims), Rows.One(followed, 7));
    }

    [Fact]
    public async Task While_the_kind_folder_is_missing_mid_swap_the_last_state_keeps_being_served()
    {
        using ArtifactsRoot writer = _artifacts.Open(publishIntervalMs: 0);
        VectorStore written = writer.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        await written.AppendAsync(Rows.Batch(Dims, [0, 1]), AppendMode.Overwrite, -1);
        using ArtifactsRoot follower = OpenFollower();
        ModelCache cache = follower.OpenCache("mini")!;
        VectorStore followed = cache[VectorKind.Query];

        // What an invalidation's first rename leaves for an instant: no kind folder, so no kind manifest.
        string kindDirectory = _artifacts.KindDirectory("mini", VectorKind.Query);
        string aside = kindDirectory + "-aside";
        Directory.Move(kindDirectory, aside);
        cache.Poll();
        Assert.Equal(Rows.Vector(1, Dims), Rows.One(followed, 1));

        Directory.Move(aside, kindDirectory);
        await written.AppendAsync(Rows.Batch(Dims, [2]), AppendMode.Overwrite, -1);
        cache.Poll();
        Assert.Equal(Rows.Vector(2, Dims), Rows.One(followed, 2));
    }

    [Fact]
    public async Task A_segment_replaced_by_a_copy_is_mapped_anew_and_keeps_its_rows()
    {
        // The follower reads a copy of the writer's root, kept in sync the way rsync does: each changed file is written
        // under a temporary name and renamed over the old one (another inode), the manifest last.
        using ArtifactsRoot writer = _artifacts.Open(publishIntervalMs: 0);
        VectorStore written = writer.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
        await written.AppendAsync(Rows.Batch(Dims, [0, 1]), AppendMode.Overwrite, -1);
        using var copy = new TestArtifacts(output);
        Sync(_artifacts.Root, copy.Root);

        using ArtifactsRoot follower = ArtifactsRoot.OpenFollower(copy.Root, new StorageOptions(), TimeSpan.FromHours(1), copy.Logs);
        ModelCache cache = follower.OpenCache("mini")!;
        VectorStore followed = cache[VectorKind.Query];
        Segment first = Assert.Single(followed.SegmentsSnapshot);
        Assert.Equal(2, followed.RowCount);

        await written.AppendAsync(Rows.Batch(Dims, [2, 3]), AppendMode.Overwrite, -1);
        Sync(_artifacts.Root, copy.Root);
        cache.Poll();

        Assert.Equal(4, followed.RowCount);
        Assert.NotSame(first, Assert.Single(followed.SegmentsSnapshot));
        for (int n = 0; n < 4; n++)
        {
            Assert.Equal(Rows.Vector(n, Dims), Rows.One(followed, n));
        }
    }

    [Fact]
    public async Task A_manifest_that_claims_more_rows_than_the_segment_commits_serves_only_the_committed_ones()
    {
        using (ArtifactsRoot writer = _artifacts.Open(publishIntervalMs: 0))
        {
            VectorStore written = writer.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Query];
            await written.AppendAsync(Rows.Batch(Dims, [0, 1, 2]), AppendMode.Overwrite, -1);
        }

        // A manifest copied ahead of its segment (a copy tool that does not keep the order): 5 rows claimed, 3 committed.
        string manifestPath = Path.Combine(_artifacts.KindDirectory("mini", VectorKind.Query), "manifest.json");
        string manifest = await File.ReadAllTextAsync(manifestPath);
        await File.WriteAllTextAsync(manifestPath, manifest.Replace("\"rows\": 3", "\"rows\": 5").Replace("\"sequence\": 3", "\"sequence\": 5"));

        using ArtifactsRoot follower = OpenFollower();
        VectorStore followed = follower.OpenCache("mini")![VectorKind.Query];
        Assert.Equal(3, followed.RowCount);
        Assert.Equal(Rows.Vector(2, Dims), Rows.One(followed, 2));
    }

    [Fact]
    public async Task A_sidecar_larger_than_one_read_chunk_is_indexed_whole()
    {
        // 150,000 rows in one segment: more records than one chunk of the follower's sidecar reads takes, and more bytes.
        const int Count = 150_000;
        using ArtifactsRoot writer = _artifacts.Open(segmentRows: 200_000, publishIntervalMs: 0);
        VectorStore written = writer.CreateOrOpenCache("mini", Rows.Descriptor(Dims))[VectorKind.Document];
        var batch = new RowBatch(Dims, Count);
        for (int n = 0; n < Count; n++)
        {
            batch.Add(Rows.Key(n), $"a-rather-long-document-id-{n}", Rows.Vector(n, Dims));
        }

        await written.AppendAsync(batch, AppendMode.Overwrite, -1);
        using ArtifactsRoot follower = OpenFollower();
        VectorStore followed = follower.OpenCache("mini")![VectorKind.Document];

        Assert.Equal(Count, followed.RowCount);
        Assert.Equal(Count, followed.IdCount);
        Assert.True(new FileInfo(Path.Combine(_artifacts.KindDirectory("mini", VectorKind.Document), "000000.keys.msgpack")).Length > 4 << 20);
        foreach (int n in new[] { 0, 65_535, 65_536, 100_000, Count - 1 })
        {
            Assert.Equal(Rows.Vector(n, Dims), Rows.One(followed, n));
        }
    }

    [Fact]
    public async Task A_changed_cache_manifest_shows_as_new_generations_of_both_kinds()
    {
        using ArtifactsRoot writer = _artifacts.Open(publishIntervalMs: 0);
        ModelCache written = writer.CreateOrOpenCache("mini", Rows.Descriptor(Dims));
        await written[VectorKind.Query].AppendAsync(Rows.Batch(Dims, [1]), AppendMode.Overwrite, -1);
        await written[VectorKind.Document].AppendAsync(Rows.Batch(Dims, [2]), AppendMode.Overwrite, -1);
        using ArtifactsRoot follower = OpenFollower();
        ModelCache cache = follower.OpenCache("mini")!;
        long query = cache[VectorKind.Query].Generation;
        long document = cache[VectorKind.Document].Generation;

        // Another model, of another width, takes the folder over: the writer resets both kinds, then rewrites the manifest.
        writer.CreateOrOpenCache("mini", Rows.Descriptor(2 * Dims, fingerprint: "fp-2"));
        await written[VectorKind.Document].AppendAsync(Rows.Batch(2 * Dims, [3]), AppendMode.Overwrite, -1);
        cache.Poll();

        Assert.Equal("fp-2", cache.Fingerprint);
        Assert.Equal(2 * Dims, cache.Dims);
        Assert.NotEqual(query, cache[VectorKind.Query].Generation);
        Assert.NotEqual(document, cache[VectorKind.Document].Generation);
        Assert.Equal(0, cache[VectorKind.Query].RowCount);
        Assert.Null(Rows.One(cache[VectorKind.Document], 2));
        Assert.Equal(Rows.Vector(3, 2 * Dims), Rows.One(cache[VectorKind.Document], 3));
    }

    [Fact]
    public async Task A_new_model_appears_on_a_poll_and_the_follower_refuses_writes()
    {
        using ArtifactsRoot writer = _artifacts.Open(publishIntervalMs: 0);
        using ArtifactsRoot follower = ArtifactsRoot.OpenFollower(_artifacts.Root, new StorageOptions(), TimeSpan.FromMilliseconds(20), _artifacts.Logs);
        Assert.Empty(follower.ListCaches());

        VectorStore written = writer.CreateOrOpenCache("late", Rows.Descriptor(Dims))[VectorKind.Document];
        await written.AppendAsync(Rows.Batch(Dims, [5]), AppendMode.Overwrite, -1);
        await EmbeddingCache.Testing.Wait.UntilAsync(
            () => follower.OpenCache("late") is { } cache && Rows.One(cache[VectorKind.Document], 5) is not null, "the follower's poller to serve the new model");

        VectorStore followed = follower.OpenCache("late")![VectorKind.Document];
        Assert.True(followed.IsFollower);
        Assert.Throws<InvalidOperationException>(() => followed.AppendAsync(Rows.Batch(Dims, [6]), AppendMode.Overwrite, -1));
        Assert.Throws<InvalidOperationException>(() => follower.OpenCache("late")!.Invalidate(null));
        Assert.Throws<InvalidOperationException>(() => follower.CreateOrOpenCache("other", Rows.Descriptor(Dims)));
    }

    private ArtifactsRoot OpenFollower() =>
        ArtifactsRoot.OpenFollower(_artifacts.Root, new StorageOptions(), TimeSpan.FromHours(1), _artifacts.Logs);

    /// <summary>Copies every changed file of <paramref name="source"/> to <paramref name="target"/> the way rsync does.</summary>
    private static void Sync(string source, string target)
    {
        foreach (string file in Directory.EnumerateFiles(Path.Combine(source, "embeddings"), "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(file);
            if (name.StartsWith('.') || name.EndsWith(".tmp", StringComparison.Ordinal))
            {
                continue;
            }

            string destination = Path.Combine(target, Path.GetRelativePath(source, file));
            if (File.Exists(destination) && File.ReadAllBytes(destination).AsSpan().SequenceEqual(File.ReadAllBytes(file)))
            {
                continue;
            }

            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            File.Copy(file, destination + ".sync", overwrite: true);
            File.Move(destination + ".sync", destination, overwrite: true);
        }
    }
}
