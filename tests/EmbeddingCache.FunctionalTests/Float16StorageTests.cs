using System.Runtime.InteropServices;
using System.Text.Json;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Testing;
using Google.Protobuf;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Caches kept as float16 ('&lt;f2'), per model: half the bytes for users who want them (issue 5).</summary>
public sealed class Float16StorageTests(ITestOutputHelper output) : ServerTest(output)
{
    private const int Dims = 384;

    [Fact]
    public async Task A_model_asking_for_float16_storage_keeps_half_the_bytes_and_serves_one_vector_per_text_computed_or_cached()
    {
        var server = await StartServerAsync();
        MakeModelFolder("half-minilm", """{"storage_dtype": "float16"}""");
        var texts = Wire.Texts(seed: 41, count: 5);

        var exact = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
        var computed = await server.Client.EmbedAsync(new EmbedRequest { Model = "half-minilm", Kind = Kind.Document, Texts = { texts } });
        var cached = await server.Client.EmbedAsync(new EmbedRequest { Model = "half-minilm", Kind = Kind.Document, Texts = { texts } });

        Assert.All(computed.Sources, s => Assert.Equal(RowSource.Computed, s));
        Assert.All(cached.Sources, s => Assert.Equal(RowSource.Cached, s));
        Assert.Equal(exact.Fingerprint, computed.Fingerprint); // storage is not part of what makes a vector
        Assert.Equal(computed.Vectors.Data, cached.Vectors.Data); // the computing call got the rounded vector too
        var exactFloats = Wire.Floats(exact.Vectors);
        var halfFloats = Wire.Floats(cached.Vectors);
        for (int i = 0; i < exactFloats.Length; i++)
        {
            Assert.Equal((float)(Half)halfFloats[i], halfFloats[i]); // a float16 value
            Assert.True(Math.Abs(exactFloats[i] - halfFloats[i]) <= 1e-3, $"float {i}: {exactFloats[i]} vs {halfFloats[i]}");
        }

        // numpy reads '<f2' rows holding exactly those halves.
        var rows = await FileRowsAsync("half-minilm/document");
        Assert.Equal(texts.Length, rows.Count);
        var expected = Enumerable.Range(0, texts.Length).Select(i => Convert.ToHexStringLower(HalfBytes(halfFloats.AsSpan(i * Dims, Dims)))).ToHashSet();
        Assert.All(rows, row => Assert.Contains(row, expected));
        var exactRows = await FileRowsAsync($"{Wire.MiniLM}/document");
        Assert.All(exactRows, row => Assert.Equal(Dims * 4 * 2, row.Length)); // float32 where nobody asked otherwise
    }

    [Fact]
    public async Task The_first_Put_of_float16_vectors_makes_a_float16_store_only_cache_that_gives_them_back_bit_for_bit()
    {
        var server = await StartServerAsync();
        var halves = Wire.RandomRows(new Random(5), 3, Dims).Select(v => (Half)v).ToArray();
        var data = ByteString.CopyFrom(MemoryMarshal.AsBytes(halves.AsSpan()));
        var vectors = new Vectors { Count = 3, Dims = Dims, Dtype = DType.Float16, Data = data };
        await server.Client.PutAsync(new PutRequest { Model = "half-store", Kind = Kind.Document, Ids = { "a", "b", "c" }, Vectors = vectors });

        var asHalf = await server.Client.GetAsync(new GetRequest { Model = "half-store", Kind = Kind.Document, Ids = { "a", "b", "c" }, Dtype = DType.Float16 });
        Assert.Equal(data, asHalf.Vectors.Data);
        var rows = await FileRowsAsync("half-store/document");
        Assert.Equal(Enumerable.Range(0, 3).Select(i => Convert.ToHexStringLower(data.Span.Slice(i * Dims * 2, Dims * 2))), rows);
        Assert.Contains(server.Log.Split('\n'), line => line.Contains("StoreOnlyModelCreated", StringComparison.Ordinal) && line.Contains("float16", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Asking_for_float16_keeps_a_caches_float32_rows_until_it_is_invalidated()
    {
        var server = await StartServerAsync();
        string folder = MakeModelFolder("switching", manifest: null);
        var texts = Wire.Texts(seed: 43, count: 3);
        var request = new EmbedRequest { Model = "switching", Kind = Kind.Document, Texts = { texts } };
        var before = await server.Client.EmbedAsync(request);

        File.WriteAllText(Path.Combine(folder, "manifest.json"), """{"storage_dtype": "float16"}""");
        await WaitForLogAsync(server, "StorageDTypeKept", () => server.Client.EmbedAsync(request).ResponseAsync);
        var kept = await server.Client.EmbedAsync(request);
        Assert.All(kept.Sources, s => Assert.Equal(RowSource.Cached, s));
        Assert.Equal(before.Vectors.Data, kept.Vectors.Data);

        await server.Client.InvalidateAsync(new InvalidateRequest { Model = "switching" });
        var recomputed = await server.Client.EmbedAsync(request);
        Assert.All(recomputed.Sources, s => Assert.Equal(RowSource.Computed, s));
        Assert.All(await FileRowsAsync("switching/document"), row => Assert.Equal(Dims * 2 * 2, row.Length));
    }

    /// <summary>A model folder of MiniLM's files (provisioned by the server's first start), mean pooling as its 1_Pooling says, with the given manifest.</summary>
    private string MakeModelFolder(string name, string? manifest)
    {
        string models = Path.Combine(Artifacts.Path, "models");
        string folder = Path.Combine(models, name);
        Directory.CreateDirectory(folder);
        foreach (var file in new[] { "model.onnx", "vocab.txt" })
        {
            File.Copy(Path.Combine(models, Wire.MiniLM, file), Path.Combine(folder, file));
        }

        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), """{"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true}""");

        if (manifest is not null) File.WriteAllText(Path.Combine(folder, "manifest.json"), manifest);
        return folder;
    }

    /// <summary>The vector bytes (hex) of every row numpy reads from the files of one model's kind.</summary>
    private async Task<List<string>> FileRowsAsync(string modelAndKind)
    {
        var files = JsonDocument.Parse(await Python.RunAsync("read_cache_files.py", Artifacts.Path)).RootElement;
        return [.. files.GetProperty(modelAndKind).EnumerateArray().Select(row => row[2].GetString()!)];
    }

    private static byte[] HalfBytes(ReadOnlySpan<float> values)
    {
        var halves = new Half[values.Length];
        for (int i = 0; i < values.Length; i++) halves[i] = (Half)values[i];
        return MemoryMarshal.AsBytes(halves.AsSpan()).ToArray();
    }

    /// <summary>Makes calls until the server logs <paramref name="eventName"/> (the folder watcher reports a change within milliseconds).</summary>
    private static Task WaitForLogAsync(ServerProcess server, string eventName, Func<Task> call) =>
        Wait.UntilAsync(
            async () =>
            {
                if (server.Log.Contains(eventName, StringComparison.Ordinal)) return true;
                await call();
                return false;
            },
            $"the server to log {eventName}");
}
