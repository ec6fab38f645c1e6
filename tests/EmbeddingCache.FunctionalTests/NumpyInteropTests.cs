using System.Text.Json;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Users open the cache files with numpy and msgpack, no server: the files must hold exactly what the server returns.</summary>
public sealed class NumpyInteropTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task Numpy_reads_every_file_while_the_server_appends_and_finds_what_the_server_returned()
    {
        // Small segments so that sealing happens while numpy reads.
        var server = await StartServerAsync("--EmbeddingCache:Storage:SegmentRows=40");
        var expectedById = new Dictionary<string, byte[]>();
        var expectedByKey = new Dictionary<string, byte[]>();
        var random = new Random(6);

        string writerDone = Path.Combine(Artifacts.Path, "writer-done");
        var writer = Task.Run(async () =>
        {
            for (int round = 0; round < 120; round++)
            {
                var ids = Enumerable.Range(0, 7).Select(i => $"doc-{round}-{i}").ToArray();
                var rows = Wire.RandomRows(random, 7, 16);
                await server.Client.PutAsync(new PutRequest { Model = "external", Kind = Kind.Document, Ids = { ids }, Vectors = Wire.Pack(rows, 16) });
                lock (expectedById)
                {
                    for (int i = 0; i < 7; i++) expectedById[ids[i]] = Wire.Row(Wire.Pack(rows, 16), i);
                }
                if (round % 4 == 0)
                {
                    var texts = Wire.Texts(seed: 1000 + round, count: 3, prefix: "query");
                    var reply = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { texts } });
                    lock (expectedById)
                    {
                        for (int i = 0; i < 3; i++) expectedByKey[Wire.ContentKeyHex(texts[i])] = Wire.Row(reply.Vectors, i);
                    }
                }
            }
        });

        // Full passes over every file for as long as rows are being appended and segments sealed.
        var reader = Python.RunAsync("read_cache_files.py", Artifacts.Path, "--until", writerDone);
        try
        {
            await writer;
        }
        finally
        {
            await File.WriteAllTextAsync(writerDone, "");
        }
        Assert.NotEmpty(JsonDocument.Parse(await reader).RootElement.EnumerateObject());

        var files = JsonDocument.Parse(await Python.RunAsync("read_cache_files.py", Artifacts.Path)).RootElement;
        var external = files.GetProperty("external/document").EnumerateArray().ToList();
        Assert.Equal(expectedById.Count, external.Count);
        foreach (var row in external)
        {
            string id = row[1].GetString()!;
            Assert.Equal(Convert.ToHexStringLower(expectedById[id]), row[2].GetString());
        }
        var queries = files.GetProperty($"{Wire.MiniLM}/query").EnumerateArray().ToList();
        Assert.Equal(expectedByKey.Count, queries.Count);
        foreach (var row in queries)
        {
            Assert.Equal(Convert.ToHexStringLower(expectedByKey[row[0].GetString()!]), row[2].GetString());
        }
        Assert.True(Directory.GetFiles(Path.Combine(Artifacts.Path, "embeddings", "external", "document"), "*.npy").Length > 1,
            $"the test should have sealed segments: {expectedById.Count} rows put, files: {string.Join(", ", Directory.GetFileSystemEntries(Path.Combine(Artifacts.Path, "embeddings", "external"), "*", SearchOption.AllDirectories))}");
    }
}
