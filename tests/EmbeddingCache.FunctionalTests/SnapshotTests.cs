using System.Text.Json;
using System.Text.Json.Nodes;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Storage;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// <c>embcache snapshot</c> (issue 17, test 5): a consistent copy of a live writer's cache that checks with
/// <c>sha256sum -c</c>, loads in numpy, and serves the same vectors from a fresh root; with a model of another
/// fingerprint it is refused, kept, and given up only by an explicit Invalidate.
/// </summary>
public sealed class SnapshotTests(ITestOutputHelper output) : ServerTest(output)
{
    private const int SegmentRows = 8;
    private readonly TempDirectory copies = new();

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        copies.Dispose();
    }

    [Fact]
    public async Task A_snapshot_of_a_live_writer_checks_with_sha256sum_loads_in_numpy_and_serves_the_same_vectors()
    {
        var writer = await StartServerAsync($"--EmbeddingCache:Storage:SegmentRows={SegmentRows}");
        var corpus = await FillAsync(writer, seed: 40);

        // Rows keep arriving while the snapshot runs: the copy is a committed prefix of each kind.
        using var stopWriting = new CancellationTokenSource();
        var writing = Task.Run(async () =>
        {
            var random = new Random(41);
            for (int i = 0; !stopWriting.IsCancellationRequested; i++)
            {
                await writer.Client.PutAsync(new PutRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { $"late-{i}" }, Vectors = Wire.Pack(Wire.RandomRows(random, 1, 384), 384) });
            }
        });
        string copy = Path.Combine(copies.Path, "shipped");
        var (code, text) = await Embcache.RunAsync("snapshot", Wire.MiniLM, "--out", copy, "--artifacts", Artifacts.Path);
        await stopWriting.CancelAsync();
        await writing;
        Output.WriteLine(text);
        Assert.True(code == 0, text);
        Assert.Matches(@"written to .*shipped: 9 query rows, \d+ document rows, \d+ files, [\d,]+ bytes, fingerprint \S+", text);
        Assert.Empty(Directory.GetFileSystemEntries(copies.Path, ".*")); // no temporary folder left beside it

        string modelDirectory = Path.Combine(copy, "embeddings", Wire.MiniLM);
        var checks = await ExternalTool.RunAsync("sha256sum", modelDirectory, new Dictionary<string, string>(), TimeSpan.FromSeconds(60), "-c", "SHA256SUMS");
        Assert.Contains("document/000000.npy: OK", checks);
        Assert.Contains("query/000001.keys.msgpack: OK", checks);
        Assert.Contains("manifest.json: OK", checks);

        // Every .npy loads in numpy, holds exactly its rows (no reserve) and a record per row, and each kind is a
        // committed prefix of the writer's rows; the sealed segments are the writer's files byte for byte.
        var copied = JsonDocument.Parse(await Python.RunAsync("read_cache_files.py", copy)).RootElement;
        var source = JsonDocument.Parse(await Python.RunAsync("read_cache_files.py", Artifacts.Path)).RootElement;
        foreach (var kind in new[] { "query", "document" })
        {
            var copyRows = copied.GetProperty($"{Wire.MiniLM}/{kind}").EnumerateArray().Select(row => row.GetRawText()).ToList();
            var sourceRows = source.GetProperty($"{Wire.MiniLM}/{kind}").EnumerateArray().Select(row => row.GetRawText()).ToList();
            Assert.Equal(sourceRows.Take(copyRows.Count), copyRows);
            foreach (var npy in Directory.GetFiles(Path.Combine(modelDirectory, kind), "*.npy"))
            {
                var header = NpyHeader.Read(npy);
                Assert.Equal(header.DataOffset + header.Rows * header.RowBytes, new FileInfo(npy).Length);
            }
        }
        Assert.Equal(9, copied.GetProperty($"{Wire.MiniLM}/query").GetArrayLength());
        foreach (var sealedFile in new[] { "document/000000.npy", "document/000000.keys.msgpack", "query/000000.npy", "query/000000.keys.msgpack" })
        {
            Assert.Equal(await File.ReadAllBytesAsync(Path.Combine(Artifacts.Path, "embeddings", Wire.MiniLM, sealedFile)), await File.ReadAllBytesAsync(Path.Combine(modelDirectory, sealedFile)));
        }
        var manifest = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(modelDirectory, "manifest.json")))!;
        Assert.Equal((string)manifest["fingerprint"]!, (string)manifest["snapshot"]!["source_fingerprint"]!);
        Assert.Equal(9, (long)manifest["snapshot"]!["rows"]!["query"]!);

        var expected = await ReadAllAsync(writer, corpus);
        await writer.StopAsync();
        var served = await StartServerOnAsync(copy);
        Assert.Equal(expected, await ReadAllAsync(served, corpus));
    }

    [Fact]
    public async Task A_snapshot_whose_model_has_another_fingerprint_is_refused_and_kept_until_invalidated()
    {
        var writer = await StartServerAsync($"--EmbeddingCache:Storage:SegmentRows={SegmentRows}");
        var corpus = await FillAsync(writer, seed: 42);
        string copy = Path.Combine(copies.Path, "shipped");
        var (code, text) = await Embcache.RunAsync("snapshot", Wire.MiniLM, "--out", copy, "--artifacts", Artifacts.Path);
        Assert.True(code == 0, text);
        await writer.StopAsync();

        // The vectors claim another model made them: what a model folder that now hashes differently looks like.
        string manifestPath = Path.Combine(copy, "embeddings", Wire.MiniLM, "manifest.json");
        var manifest = JsonNode.Parse(await File.ReadAllTextAsync(manifestPath))!;
        string modelFingerprint = (string)manifest["fingerprint"]!;
        const string otherFingerprint = "0123456789abcdef";
        manifest["fingerprint"] = otherFingerprint;
        await File.WriteAllTextAsync(manifestPath, manifest.ToJsonString());
        string rowsBefore = await Python.RunAsync("read_cache_files.py", copy);

        var server = await StartServerOnAsync(copy);
        var refusals = new[]
        {
            await Assert.ThrowsAsync<RpcException>(() => server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { corpus.DocumentIds } }).ResponseAsync),
            await Assert.ThrowsAsync<RpcException>(() => server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { corpus.QueryTexts } }).ResponseAsync),
        };
        foreach (var refused in refusals)
        {
            Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
            Assert.Contains($"vectors were made by the model of fingerprint {otherFingerprint}", refused.Status.Detail);
            Assert.Contains($"now has fingerprint {modelFingerprint}", refused.Status.Detail);
            Assert.Contains($"embcache invalidate {Wire.MiniLM}", refused.Status.Detail);
        }
        Assert.Contains(server.Log.Split('\n'), line => line.Contains("SnapshotRefused", StringComparison.Ordinal) || line.Contains("is refused, nothing is deleted", StringComparison.Ordinal));
        await server.StopAsync();
        Assert.Equal(rowsBefore, await Python.RunAsync("read_cache_files.py", copy));
        Assert.Equal(otherFingerprint, (string)JsonNode.Parse(await File.ReadAllTextAsync(manifestPath))!["fingerprint"]!);

        // An explicit Invalidate drops the snapshot's vectors; the cache is then the model's on disk.
        server = await StartServerOnAsync(copy);
        var dropped = await server.Client.InvalidateAsync(new InvalidateRequest { Model = Wire.MiniLM });
        Assert.Equal((ulong)JsonDocument.Parse(rowsBefore).RootElement.EnumerateObject().Sum(kind => kind.Value.GetArrayLength()), dropped.RowsRemoved);
        var computed = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { corpus.QueryTexts } });
        Assert.All(computed.Sources, source => Assert.Equal(RowSource.Computed, source));
        var after = JsonNode.Parse(await File.ReadAllTextAsync(manifestPath))!;
        Assert.Equal(modelFingerprint, (string)after["fingerprint"]!);
        Assert.Null(after["snapshot"]);
    }

    [Fact]
    public async Task The_verb_refuses_an_existing_folder_an_unknown_model_and_a_bad_name_in_one_line()
    {
        string taken = Path.Combine(copies.Path, "taken");
        Directory.CreateDirectory(taken);
        await File.WriteAllTextAsync(Path.Combine(taken, "keep.txt"), "mine");

        var (existing, existingText) = await Embcache.RunAsync("snapshot", Wire.MiniLM, "--out", taken, "--artifacts", Artifacts.Path);
        var (unknown, unknownText) = await Embcache.RunAsync("snapshot", "no-such-model", "--out", Path.Combine(copies.Path, "new"), "--artifacts", Artifacts.Path);
        var (badName, badNameText) = await Embcache.RunAsync("snapshot", "../escape", "--out", Path.Combine(copies.Path, "new"), "--artifacts", Artifacts.Path);

        Assert.Equal((1, 1, 1), (existing, unknown, badName));
        Assert.Equal($"embcache: {taken} exists and is not empty: a snapshot never writes over files", existingText.Trim());
        Assert.StartsWith("embcache: no cache of 'no-such-model'", unknownText.Trim());
        Assert.StartsWith("embcache: model name '../escape' must start with a letter or digit", badNameText.Trim());
        Assert.All(new[] { existingText, unknownText, badNameText }, message => Assert.Single(message.Trim().Split('\n')));
        Assert.Equal("mine", await File.ReadAllTextAsync(Path.Combine(taken, "keep.txt")));
        Assert.Equal([taken], Directory.GetFileSystemEntries(copies.Path)); // nothing written for the refused ones
    }

    /// <summary>What <see cref="FillAsync"/> stored: ids and texts of both kinds.</summary>
    private sealed record Corpus(string[] DocumentIds, string[] QueryIds, string[] DocumentTexts, string[] QueryTexts);

    /// <summary>
    /// Puts ids and computes texts in both kinds, enough for sealed segments and a growing one in each:
    /// document 12 ids + 6 texts (8 + 8 + 2 rows), query 5 ids + 4 texts (8 + 1).
    /// </summary>
    private static async Task<Corpus> FillAsync(ServerProcess server, int seed)
    {
        var random = new Random(seed);
        var corpus = new Corpus(
            Enumerable.Range(0, 12).Select(i => $"d{i}").ToArray(),
            Enumerable.Range(0, 5).Select(i => $"q{i}").ToArray(),
            Wire.Texts(seed, 6),
            Wire.Texts(seed + 1, 4, prefix: "query"));
        await server.Client.PutAsync(new PutRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { corpus.DocumentIds }, Vectors = Wire.Pack(Wire.RandomRows(random, 12, 384), 384) });
        await server.Client.PutAsync(new PutRequest { Model = Wire.MiniLM, Kind = Kind.Query, Ids = { corpus.QueryIds }, Vectors = Wire.Pack(Wire.RandomRows(random, 5, 384), 384) });
        await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { corpus.DocumentTexts } });
        await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { corpus.QueryTexts } });
        return corpus;
    }

    /// <summary>The bytes served for every id and text of the corpus, each of which must be cached.</summary>
    private static async Task<List<string>> ReadAllAsync(ServerProcess server, Corpus corpus)
    {
        var requests = new[]
        {
            new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { corpus.DocumentIds } },
            new GetRequest { Model = Wire.MiniLM, Kind = Kind.Query, Ids = { corpus.QueryIds } },
            new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { corpus.DocumentTexts } },
            new GetRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { corpus.QueryTexts } },
        };
        var rows = new List<string>();
        foreach (var request in requests)
        {
            var reply = await server.Client.GetAsync(request);
            Assert.All(reply.Sources, source => Assert.Equal(RowSource.Cached, source));
            rows.Add(Convert.ToHexStringLower(reply.Vectors.Data.Span));
        }
        return rows;
    }
}
