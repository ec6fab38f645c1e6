using System.Text.Json;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary><c>export</c>, <c>import</c> and <c>verify</c>: the cache as files numpy users move around.</summary>
public sealed class FileVerbTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task Export_next_to_a_running_server_loads_in_numpy_and_holds_the_newest_row_per_id()
    {
        var server = await StartServerAsync("--EmbeddingCache:Storage:SegmentRows=50");
        var random = new Random(18);
        var ids = Enumerable.Range(0, 120).Select(i => $"p{i}").ToArray();
        await server.Client.PutAsync(new PutRequest { Model = "gpu", Kind = Kind.Document, Ids = { ids }, Vectors = Wire.Pack(Wire.RandomRows(random, 120, 32), 32) });
        var newer = Wire.RandomRows(random, 1, 32);
        await server.Client.PutAsync(new PutRequest { Model = "gpu", Kind = Kind.Document, Ids = { "p7" }, Vectors = Wire.Pack(newer, 32) });

        string npy = Path.Combine(Artifacts.Path, "export", "gpu.npy");
        Directory.CreateDirectory(Path.GetDirectoryName(npy)!);
        var (code, text) = await Embcache.RunAsync("export", "gpu", "--kind", "document", "--out", npy, "--artifacts", Artifacts.Path);
        Assert.True(code == 0, text);

        var exportedIds = JsonSerializer.Deserialize<string[]>(await File.ReadAllTextAsync(Path.Combine(Artifacts.Path, "export", "gpu.ids.json")))!;
        Assert.Equal(120, exportedIds.Length);
        Assert.Equal(ids.Order(), exportedIds.Order());
        var loaded = await Python.RunAsync("load_npy.py", npy);
        var rows = JsonSerializer.Deserialize<string[]>(loaded)!;
        var got = await server.Client.GetAsync(new GetRequest { Model = "gpu", Kind = Kind.Document, Ids = { exportedIds } });
        for (int i = 0; i < exportedIds.Length; i++) Assert.Equal(Convert.ToHexStringLower(Wire.Row(got.Vectors, i)), rows[i]);
        Assert.Equal(Convert.ToHexStringLower(Wire.Row(Wire.Pack(newer, 32), 0)), rows[Array.IndexOf(exportedIds, "p7")]);
    }

    [Fact]
    public async Task Import_of_a_numpy_written_file_serves_byte_identical_rows()
    {
        var server = await StartServerAsync();
        string npy = Path.Combine(Artifacts.Path, "corpus.npy");
        string idsFile = Path.Combine(Artifacts.Path, "corpus.ids.json");
        await Python.RunAsync("make_npy.py", npy, idsFile, "5000", "384", "19");

        var (code, text) = await Embcache.RunAsync("import", Wire.MiniLM, npy, "--ids", idsFile, "--server", server.Address);
        Assert.True(code == 0, text);
        Assert.Contains("imported 5,000 rows", text);

        var ids = JsonSerializer.Deserialize<string[]>(await File.ReadAllTextAsync(idsFile))!;
        var got = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { ids } });
        Assert.All(got.Sources, s => Assert.Equal(RowSource.Cached, s));
        var bytes = await File.ReadAllBytesAsync(npy);
        int dataOffset = bytes.Length - 5000 * 384 * 4;
        Assert.True(bytes.AsSpan(dataOffset).SequenceEqual(got.Vectors.Data.Span), "Get returns the numpy file's bytes exactly");

        // A wrong ids count is refused before anything is stored.
        await File.WriteAllTextAsync(idsFile, "[\"only-one\"]");
        var (refused, message) = await Embcache.RunAsync("import", "other", npy, "--ids", idsFile, "--server", server.Address);
        Assert.Equal(1, refused);
        Assert.Contains("5000 rows but the ids file has 1 ids", message);
    }

    [Fact]
    public async Task Verify_recomputes_a_sample_and_finds_a_truncated_segment()
    {
        var server = await StartServerAsync();
        string corpus = Path.Combine(Artifacts.Path, "corpus.tsv");
        var texts = Wire.Texts(seed: 20, count: 60);
        await File.WriteAllLinesAsync(corpus, texts.Select((t, i) => $"d{i}\t{t}"));
        var (warmed, warmText) = await Embcache.RunAsync("warm", Wire.MiniLM, corpus, "--server", server.Address);
        Assert.True(warmed == 0, warmText);
        await server.StopAsync();

        var (code, report) = await Embcache.RunAsync("verify", Wire.MiniLM, "--artifacts", Artifacts.Path, "--corpus", corpus, "--sample", "20");
        Output.WriteLine(report);
        Assert.True(code == 0, report);
        Assert.Contains("min cosine", report);
        Assert.Contains("verify: ok", report);

        // Without a corpus, the texts the server recorded while computing are recomputed.
        var (recorded, recordedReport) = await Embcache.RunAsync("verify", Wire.MiniLM, "--artifacts", Artifacts.Path);
        Output.WriteLine(recordedReport);
        Assert.True(recorded == 0, recordedReport);
        Assert.Matches(@"recompute Document: \d+ cached rows \(recorded Document texts\) recomputed with the model on disk, min cosine 1\.0000", recordedReport);

        string segment = Directory.GetFiles(Path.Combine(Artifacts.Path, "embeddings", Wire.MiniLM, "document"), "*.npy").Single();
        // Cut inside the committed rows, as a bad copy would.
        await using (var file = new FileStream(segment, FileMode.Open)) file.SetLength(4096);
        var (broken, brokenReport) = await Embcache.RunAsync("verify", Wire.MiniLM, "--artifacts", Artifacts.Path);
        Assert.Equal(1, broken);
        Assert.Contains("problem:", brokenReport);
    }
}
