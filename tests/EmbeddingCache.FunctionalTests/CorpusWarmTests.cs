using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Parquet;
using Parquet.Schema;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// <c>embcache warm</c> on corpora as researchers have them: BEIR's corpus.jsonl and queries.jsonl, gzipped or not,
/// and Parquet. Rows land under their <c>_id</c> with the vector of the text BEIR's SentenceBERT embeds; a file
/// that cannot be read whole is refused before anything is stored.
/// </summary>
public sealed class CorpusWarmTests(ITestOutputHelper output) : ServerTest(output)
{
    /// <summary>BEIR rows and the text BEIR's <c>encode_corpus</c> builds from each: <c>(title + " " + text).strip()</c>, or <c>text.strip()</c>.</summary>
    private static readonly (string Id, string? Title, string Text, string Embedded)[] Documents =
    [
        ("doc-title", "Dense retrieval", "embeds every passage once", "Dense retrieval embeds every passage once"),
        ("doc-empty-title", "", "  an empty title leaves the text, stripped \n", "an empty title leaves the text, stripped"),
        ("doc-no-title", null, "\tno title field at all ", "no title field at all"),
        .. Wire.Texts(seed: 31, count: 40).Select((text, i) => ($"{i}", (string?)$"Title {i}", text, $"Title {i} {text}")),
    ];

    [Theory]
    [InlineData("corpus.jsonl", false)]
    [InlineData("corpus.jsonl.gz", true)]
    [InlineData("corpus.jsonl", true)] // gzip told from the bytes, not the name
    [InlineData("corpus.parquet", false)]
    public async Task A_beir_corpus_is_stored_under_its_ids_with_the_vectors_of_its_joined_titles_and_texts(string fileName, bool gzip)
    {
        var server = await StartServerAsync();
        string corpus = Path.Combine(Artifacts.Path, fileName);
        if (fileName.EndsWith(".parquet", StringComparison.Ordinal)) await WriteParquetAsync(corpus);
        else await WriteJsonLinesAsync(corpus, Documents.Select(d => BeirLine(d.Id, d.Title, d.Text)), gzip);

        string report = await AssertWarmStoresAsync(server, corpus, Kind.Document, Documents.Select(d => d.Id).ToArray(), Documents.Select(d => d.Embedded).ToArray());
        Assert.Equal(gzip, report.Contains("gzip-compressed", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Queries_jsonl_lands_as_queries_with_its_texts_as_they_are()
    {
        var server = await StartServerAsync();
        string queries = Path.Combine(Artifacts.Path, "queries.jsonl");
        var texts = Wire.Texts(seed: 32, count: 20, prefix: "what is").Append(" a query keeps its spaces ").ToArray();
        var ids = texts.Select((_, i) => $"q{i}").ToArray();
        await WriteJsonLinesAsync(queries, ids.Zip(texts, (id, text) => JsonSerializer.Serialize(new { _id = id, text, metadata = new { } })));

        string report = await AssertWarmStoresAsync(server, queries, Kind.Query, ids, texts);
        Assert.Contains("as queries", report);
        var asDocuments = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { ids } });
        Assert.All(asDocuments.Sources, source => Assert.Equal(RowSource.Missing, source));
    }

    [Fact]
    public async Task A_binary_file_or_a_broken_row_anywhere_is_refused_naming_it_with_the_cache_files_unchanged()
    {
        var server = await StartServerAsync();
        string good = Path.Combine(Artifacts.Path, "good.jsonl");
        await WriteJsonLinesAsync(good, Documents.Take(10).Select(d => BeirLine(d.Id, d.Title, d.Text)));
        var (warmed, warmReport) = await Embcache.RunAsync("warm", Wire.MiniLM, good, "--server", server.Address);
        Assert.True(warmed == 0, warmReport);
        var before = CacheFiles();

        var lines = Documents.Take(8).Select(d => BeirLine(d.Id, d.Title, d.Text)).ToList();
        var broken = new (string Name, Func<string, Task> Write, string Where)[]
        {
            ("image.png", path => File.WriteAllBytesAsync(path, [0x89, .. "PNG\r\n"u8, 0x1a, (byte)'\n', .. new byte[64]]), ":1: "),
            ("mixed.jsonl", path => WriteJsonLinesAsync(path, [.. lines[..5], JsonSerializer.Serialize(new { text = "no id here" }), .. lines[5..]]), ":6: no id"),
            ("mixed.jsonl.gz", path => WriteJsonLinesAsync(path, [.. lines, JsonSerializer.Serialize(new { title = "t", text = "no id" })], gzip: true), ":9: no id"),
            ("cut.jsonl.gz", async path =>
            {
                // A download stopped where the compressed lines end, before the gzip trailer: every line still decompresses.
                await WriteJsonLinesAsync(path, lines, gzip: true);
                await using var file = new FileStream(path, FileMode.Open);
                file.SetLength(file.Length - 8);
            }, "the gzip data ends early"),
            ("joined.jsonl.gz", async path =>
            {
                // Two gzip files joined (as `cat a.gz b.gz` or bgzip makes them): the trailer cannot vouch for the whole.
                await WriteJsonLinesAsync(path, lines[..4], gzip: true);
                byte[] first = await File.ReadAllBytesAsync(path);
                await WriteJsonLinesAsync(path, lines[4..], gzip: true);
                await File.WriteAllBytesAsync(path, [.. first, .. await File.ReadAllBytesAsync(path)]);
            }, "several gzip files joined"),
            ("bad-json.jsonl", path => WriteJsonLinesAsync(path, [.. lines[..2], "{\"_id\": \"x\", \"text\": ", .. lines[2..]]), ":3: not JSON"),
            ("empty-id.jsonl", path => WriteJsonLinesAsync(path, [.. lines[..3], JsonSerializer.Serialize(new { _id = "", text = "an empty id" })]), ":4: an empty id"),
            ("no-text.jsonl", path => WriteJsonLinesAsync(path, [lines[0], JsonSerializer.Serialize(new { _id = "x", body = "text under another name" })]), ":2: no string field \"text\""),
            ("mixed.parquet", path => WriteParquetAsync(path, withoutIdAt: 4), "row 5: no id"),
        };
        foreach (var (name, write, where) in broken)
        {
            string path = Path.Combine(Artifacts.Path, name);
            await write(path);
            var (code, report) = await Embcache.RunAsync("warm", Wire.MiniLM, path, "--server", server.Address);
            Output.WriteLine($"{name}: exit {code}: {report}");
            Assert.Equal(1, code);
            Assert.Contains(path, report);
            Assert.Contains(where, report);
            Assert.Equal(before, CacheFiles());
        }

        // Working on the root directly refuses the same way, before it takes the root (a server's stop rewrites manifests: compare after it).
        await server.StopAsync();
        before = CacheFiles();
        string mixed = Path.Combine(Artifacts.Path, "mixed.jsonl");
        var (direct, directReport) = await Embcache.RunAsync("warm", Wire.MiniLM, mixed, "--artifacts", Artifacts.Path);
        Assert.Equal(1, direct);
        Assert.Contains($"{mixed}:6: no id", directReport);
        Assert.Equal(before, CacheFiles());
        var restarted = await StartServerAsync();
        var models = await restarted.Client.ListModelsAsync(new ListModelsRequest());
        Assert.Equal(10UL, models.Models.Single(m => m.Name == Wire.MiniLM).DocumentRows);
    }

    /// <summary>
    /// Warms <paramref name="corpus"/> and checks, row by row, that Get by id returns the vector the server computes for
    /// the text BEIR embeds (computed first, then dropped so that warm computes it again), and that an Embed of that text hits it.
    /// </summary>
    private async Task<string> AssertWarmStoresAsync(ServerProcess server, string corpus, Kind kind, string[] ids, string[] embeddedTexts)
    {
        var reference = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = kind, Texts = { embeddedTexts } });
        await server.Client.InvalidateAsync(new InvalidateRequest { Model = Wire.MiniLM });

        var (code, report) = await Embcache.RunAsync("warm", Wire.MiniLM, corpus, "--server", server.Address);
        Output.WriteLine(report);
        Assert.True(code == 0, report);
        Assert.Contains($"{ids.Length} computed, 0 already cached", report);
        Assert.Contains(corpus.EndsWith(".parquet", StringComparison.Ordinal) ? "PARQUET" : "JSONL", report);

        var byId = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = kind, Ids = { ids } });
        Assert.All(byId.Sources, source => Assert.Equal(RowSource.Cached, source));
        var stored = Wire.Floats(byId.Vectors);
        var expected = Wire.Floats(reference.Vectors);
        int dims = (int)byId.Vectors.Dims;
        for (int row = 0; row < ids.Length; row++)
        {
            double cosine = Wire.Cosine(stored.AsSpan(row * dims, dims), expected.AsSpan(row * dims, dims));
            Assert.True(cosine >= 0.99999, $"{ids[row]}: cosine {cosine} to Embed of \"{embeddedTexts[row]}\"");
        }
        var byText = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = kind, Texts = { embeddedTexts }, CacheOnly = true });
        Assert.All(byText.Sources, source => Assert.Equal(RowSource.Cached, source));
        Assert.True(byText.Vectors.Data.Span.SequenceEqual(byId.Vectors.Data.Span), "Embed of the joined text finds the row stored under the id");

        // verify --corpus reads the file as warm did: its sample of texts finds their cached rows (next to the live server).
        var (verified, verifyReport) = await Embcache.RunAsync("verify", Wire.MiniLM, "--artifacts", Artifacts.Path, "--corpus", corpus);
        Output.WriteLine(verifyReport);
        Assert.True(verified == 0, verifyReport);
        Assert.Matches($@"recompute {(kind == Kind.Query ? "Query" : "Document")}: [1-9]\d* cached rows \(texts of {Path.GetFileName(corpus)}\)", verifyReport);
        return report;
    }

    private static string BeirLine(string id, string? title, string text) =>
        title is null ? JsonSerializer.Serialize(new { _id = id, text }) : JsonSerializer.Serialize(new { _id = id, title, text });

    /// <summary>One JSON object a line, maybe gzip-compressed.</summary>
    private static async Task WriteJsonLinesAsync(string path, IEnumerable<string> lines, bool gzip = false)
    {
        await using var file = File.Create(path);
        await using Stream content = gzip ? new GZipStream(file, CompressionLevel.Optimal) : file;
        await using var writer = new StreamWriter(content);
        foreach (var line in lines) await writer.WriteLineAsync(line);
    }

    /// <summary><see cref="Documents"/> as BEIR's Parquet exports hold them (_id, title, text), in two row groups.</summary>
    private static async Task WriteParquetAsync(string path, int? withoutIdAt = null)
    {
        var id = new DataField<string>("_id");
        var title = new DataField<string>("title");
        var text = new DataField<string>("text");
        await using var file = File.Create(path);
        await using var writer = await ParquetWriter.CreateAsync(new ParquetSchema(id, title, text), file);
        foreach (var chunk in Documents.Select((d, i) => (d, i)).Chunk(Documents.Length / 2 + 1))
        {
            using var group = writer.CreateRowGroup();
            await group.WriteAsync(id, chunk.Select(row => row.i == withoutIdAt ? null! : row.d.Id).ToArray(), null);
            await group.WriteAsync(title, chunk.Select(row => row.d.Title!).ToArray(), null);
            await group.WriteAsync(text, chunk.Select(row => row.d.Text).ToArray(), null);
        }
    }

    /// <summary>Every file under the cache's embeddings folder with a hash of its bytes.</summary>
    private Dictionary<string, string> CacheFiles() =>
        Directory.EnumerateFiles(Path.Combine(Artifacts.Path, "embeddings"), "*", SearchOption.AllDirectories)
            .ToDictionary(path => Path.GetRelativePath(Artifacts.Path, path), path => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path))));
}
