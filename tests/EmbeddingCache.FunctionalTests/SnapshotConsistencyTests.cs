using EmbeddingCache.Engine.CacheFiles;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Storage;
using Microsoft.Extensions.Logging.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// <see cref="CacheSnapshot"/> next to a writer in the same process that appends and invalidates as fast as it can:
/// every copy kept is, per kind, a committed prefix of one generation, never a mix.
/// </summary>
public sealed class SnapshotConsistencyTests : IDisposable
{
    private const string Model = "gpu";
    private const int Dims = 8;
    private const int SegmentRows = 16;
    private static readonly VectorKind[] Kinds = [VectorKind.Query, VectorKind.Document];
    private readonly TempDirectory source = new();
    private readonly TempDirectory copies = new();

    public void Dispose()
    {
        source.Dispose();
        copies.Dispose();
    }

    [Fact]
    public async Task Snapshots_taken_while_rows_are_appended_are_each_a_committed_prefix_of_both_kinds()
    {
        var copied = new List<string>();
        using (var root = ArtifactsRoot.Open(source.Path, new StorageOptions { SegmentRows = SegmentRows }, NullLoggerFactory.Instance))
        {
            var cache = root.CreateOrOpenCache(Model, new CacheDescriptor { Dims = Dims, Fingerprint = "", StoreOnly = true });
            using var stop = new CancellationTokenSource();
            var appending = Task.Run(() => AppendAsync(cache, generation: 0, rows: 400, stop.Token));
            while (!appending.IsCompleted)
            {
                copied.Add(CacheSnapshot.Write(source.Path, Model, Path.Combine(copies.Path, $"s{copied.Count}")).Directory);
            }
            await appending;
        }

        var written = Kinds.ToDictionary(kind => kind, kind => RowsOf(source.Path, kind));
        Assert.All(written.Values, rows => Assert.Equal(400, rows.Count));
        var counts = new List<int>();
        foreach (var copy in copied)
        {
            foreach (var kind in Kinds)
            {
                var rows = RowsOf(copy, kind);
                Assert.Equal(written[kind].Take(rows.Count), rows);
                counts.Add(rows.Count);
            }
        }
        // The copies were made while the writer appended: they hold different prefixes, partial segments among them.
        Assert.True(counts.Distinct().Count() > 2, $"copies of {string.Join(", ", counts)} rows");
        Assert.Contains(counts, count => count % SegmentRows != 0);

        // A copy opened as a root of its own serves its rows as they are: recovery finds nothing to set aside.
        string last = copied[^1];
        var expected = RowsOf(last, VectorKind.Document);
        using (var served = ArtifactsRoot.Open(last, new StorageOptions { SegmentRows = SegmentRows }, NullLoggerFactory.Instance))
        {
            var cache = served.OpenCache(Model)!;
            Assert.True(cache.FromSnapshot);
            var vectors = new byte[expected.Count * Dims * 4];
            var found = new bool[expected.Count];
            Assert.Equal(expected.Count, cache[VectorKind.Document].GatherByIds([.. expected.Select(row => row.Id)], VectorDType.Float32, vectors, found));
            Assert.Equal(string.Concat(expected.Select(row => row.Vector)), Convert.ToHexStringLower(vectors));
        }
        Assert.False(Directory.Exists(Path.Combine(last, "quarantine")));
    }

    [Fact]
    public async Task Snapshots_taken_while_kinds_are_invalidated_never_mix_generations()
    {
        int kept = 0, givenUp = 0;
        using (var root = ArtifactsRoot.Open(source.Path, new StorageOptions { SegmentRows = SegmentRows }, NullLoggerFactory.Instance))
        {
            var cache = root.CreateOrOpenCache(Model, new CacheDescriptor { Dims = Dims, Fingerprint = "", StoreOnly = true });
            using var stop = new CancellationTokenSource();
            var writing = Task.Run(async () =>
            {
                for (int generation = 0; generation < 60; generation++)
                {
                    await AppendAsync(cache, generation, rows: 40, stop.Token);
                    cache.Invalidate(kind: null);
                }
            });
            while (!writing.IsCompleted)
            {
                string copy = Path.Combine(copies.Path, $"s{kept + givenUp}");
                try
                {
                    CacheSnapshot.Write(source.Path, Model, copy);
                }
                catch (InvalidOperationException e)
                {
                    Assert.Contains("was invalidated (or its model replaced) during each of 2 attempts", e.Message);
                    Assert.False(Directory.Exists(copy));
                    givenUp++;
                    continue;
                }
                foreach (var kind in Kinds)
                {
                    var ids = RowsOf(copy, kind).Select(row => row.Id).ToList();
                    string tag = ids.Count == 0 ? "" : ids[0].Split('-')[0];
                    Assert.Equal(Enumerable.Range(0, ids.Count).Select(n => $"{tag}-r{n}"), ids); // one generation's prefix
                }
                kept++;
            }
            await writing;
        }
        Assert.True(kept > 0, $"{kept} copies kept, {givenUp} given up");
        Assert.Empty(Directory.GetFileSystemEntries(copies.Path, ".*"));
    }

    /// <summary>Appends rows <c>g{generation}-r{n}</c> to both kinds, a few at a time, row n's vector all n + 1.</summary>
    private static async Task AppendAsync(ModelCache cache, int generation, int rows, CancellationToken cancel)
    {
        for (int n = 0; n < rows && !cancel.IsCancellationRequested; n += 3)
        {
            foreach (var kind in Kinds)
            {
                var batch = new RowBatch(Dims, 3);
                for (int i = n; i < Math.Min(n + 3, rows); i++)
                {
                    batch.Add(key: null, id: $"g{generation}-r{i}", Enumerable.Repeat(i + 1f, Dims).ToArray());
                }
                await cache[kind].AppendAsync(batch, AppendMode.Overwrite, expectedGeneration: -1);
            }
        }
    }

    /// <summary>Every committed row of a kind under <paramref name="artifactsRoot"/>: id and vector bytes, in storage order.</summary>
    private static List<(string Id, string Vector)> RowsOf(string artifactsRoot, VectorKind kind)
    {
        using var reader = KindFolderReader.Open(artifactsRoot, Model, kind);
        Assert.Empty(reader.Problems);
        var vector = new byte[reader.RowBytes];
        return reader.Rows().Select(row =>
        {
            reader.ReadVector(row, vector);
            return (row.Id!, Convert.ToHexStringLower(vector));
        }).ToList();
    }
}
