using System.Text.Json;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Testing;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Models as researchers have them: both built-ins, swapped files, broken folders.</summary>
public sealed class ModelFolderTests(ITestOutputHelper output) : ServerTest(output)
{
    private const string Arctic = "snowflake-arctic-embed-xs";

    [Fact]
    public async Task Arctic_queries_and_documents_differ_and_are_cached_apart()
    {
        var server = await StartServerAsync();
        string[] texts = ["what is dense retrieval?"];
        var query = await server.Client.EmbedAsync(new EmbedRequest { Model = Arctic, Kind = Kind.Query, Texts = { texts } });
        var document = await server.Client.EmbedAsync(new EmbedRequest { Model = Arctic, Kind = Kind.Document, Texts = { texts } });
        Assert.Equal(RowSource.Computed, Assert.Single(query.Sources));
        Assert.Equal(RowSource.Computed, Assert.Single(document.Sources));
        Assert.NotEqual(query.Vectors.Data, document.Vectors.Data);
        double cosine = Wire.Cosine(Wire.Floats(query.Vectors), Wire.Floats(document.Vectors));
        Assert.InRange(cosine, 0.5, 0.999);

        var again = await server.Client.EmbedAsync(new EmbedRequest { Model = Arctic, Kind = Kind.Query, Texts = { texts } });
        Assert.Equal(RowSource.Cached, Assert.Single(again.Sources));
        Assert.Equal(query.Vectors.Data, again.Vectors.Data);

        var models = await server.Client.ListModelsAsync(new ListModelsRequest());
        var arctic = Assert.Single(models.Models, m => m.Name == Arctic);
        Assert.True(arctic.CanCompute);
        Assert.Equal(384u, arctic.Dims);
        Assert.Equal(1ul, arctic.QueryRows);
        Assert.Equal(1ul, arctic.DocumentRows);
        var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(Artifacts.Path, "models", Arctic, "manifest.json"))).RootElement;
        Assert.Equal("cls", manifest.GetProperty("pooling").GetString());
    }

    [Fact]
    public async Task Replacing_a_models_files_while_serving_never_serves_its_old_vectors()
    {
        var server = await StartServerAsync();
        // Provision both built-ins, then make a model folder of our own from MiniLM's files.
        await server.Client.EmbedAsync(new EmbedRequest { Model = Arctic, Kind = Kind.Document, Texts = { "x" } });
        string models = Path.Combine(Artifacts.Path, "models");
        string mine = Path.Combine(models, "my-encoder");
        Directory.CreateDirectory(mine);
        File.Copy(Path.Combine(models, Wire.MiniLM, "model.onnx"), Path.Combine(mine, "model.onnx"));
        File.Copy(Path.Combine(models, Wire.MiniLM, "vocab.txt"), Path.Combine(mine, "vocab.txt"));
        File.WriteAllText(Path.Combine(mine, "manifest.json"), """{"pooling": "mean"}""");

        var texts = Wire.Texts(seed: 12, count: 6);
        var request = new EmbedRequest { Model = "my-encoder", Kind = Kind.Document, Texts = { texts } };
        var before = await server.Client.EmbedAsync(request);
        Assert.All(before.Sources, s => Assert.Equal(RowSource.Computed, s));
        Assert.All((await server.Client.EmbedAsync(request)).Sources, s => Assert.Equal(RowSource.Cached, s));

        // A fine-tuned checkpoint replaces the old one under the same name, the way cp does it: in place.
        File.Copy(Path.Combine(models, Arctic, "model.onnx"), Path.Combine(mine, "model.onnx"), overwrite: true);
        var after = await server.Client.EmbedAsync(request);

        Assert.All(after.Sources, s => Assert.Equal(RowSource.Computed, s));
        Assert.NotEqual(before.Fingerprint, after.Fingerprint);
        for (int i = 0; i < texts.Length; i++) Assert.NotEqual(Wire.Row(before.Vectors, i), Wire.Row(after.Vectors, i));
        Assert.Contains(server.Log.Split('\n'), line => line.Contains("my-encoder changed on disk", StringComparison.Ordinal));

        // The old cache is gone from disk: the files hold exactly the new rows.
        var files = JsonDocument.Parse(await Python.RunAsync("read_cache_files.py", Artifacts.Path)).RootElement;
        var rows = files.GetProperty("my-encoder/document").EnumerateArray().ToList();
        Assert.Equal(texts.Length, rows.Count);
        var newRows = Enumerable.Range(0, texts.Length).Select(i => Convert.ToHexStringLower(Wire.Row(after.Vectors, i))).ToHashSet();
        Assert.All(rows, row => Assert.Contains(row[2].GetString()!, newRows));
        var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(Artifacts.Path, "embeddings", "my-encoder", "manifest.json"))).RootElement;
        Assert.Equal(after.Fingerprint, manifest.GetProperty("fingerprint").GetString());

        // A restart keeps serving the new model's vectors.
        await server.StopAsync();
        var restarted = await StartServerAsync();
        var cached = await restarted.Client.EmbedAsync(request);
        Assert.All(cached.Sources, s => Assert.Equal(RowSource.Cached, s));
        Assert.Equal(after.Vectors.Data, cached.Vectors.Data);
    }

    [Fact]
    public async Task A_model_folder_that_is_broken_for_a_while_serves_its_cache_again_once_it_is_whole()
    {
        var server = await StartServerAsync();
        string models = Path.Combine(Artifacts.Path, "models");
        string mine = Path.Combine(models, "my-encoder");
        Directory.CreateDirectory(mine);
        File.Copy(Path.Combine(models, Wire.MiniLM, "model.onnx"), Path.Combine(mine, "model.onnx"));
        File.Copy(Path.Combine(models, Wire.MiniLM, "vocab.txt"), Path.Combine(mine, "vocab.txt"));
        File.WriteAllText(Path.Combine(mine, "manifest.json"), """{"pooling": "mean"}""");
        var request = new EmbedRequest { Model = "my-encoder", Kind = Kind.Document, Texts = { Wire.Texts(seed: 31, count: 3) } };
        var before = await server.Client.EmbedAsync(request);

        // Halfway through copying a checkpoint in, the folder has no vocabulary: calls fail clearly...
        string vocab = Path.Combine(mine, "vocab.txt");
        File.Move(vocab, vocab + ".away");
        var broken = await Assert.ThrowsAsync<RpcException>(async () => await server.Client.EmbedAsync(request));
        Assert.Equal(StatusCode.FailedPrecondition, broken.StatusCode);

        // ...and once the same files are back, the same model serves its cache again (it used to spin on the
        // model it had retired, and the call never returned).
        File.Move(vocab + ".away", vocab);
        var after = await server.Client.EmbedAsync(request, deadline: DateTime.UtcNow.AddSeconds(60));
        Assert.Equal(before.Fingerprint, after.Fingerprint);
        Assert.All(after.Sources, s => Assert.Equal(RowSource.Cached, s));
        Assert.Equal(before.Vectors.Data, after.Vectors.Data);
        var miss = await server.Client.EmbedAsync(new EmbedRequest { Model = "my-encoder", Kind = Kind.Document, Texts = { "a text never seen" } });
        Assert.Equal(RowSource.Computed, Assert.Single(miss.Sources));
    }

    [Fact]
    public async Task An_idle_encoder_is_unloaded_and_hits_go_on_and_the_next_miss_loads_it_again()
    {
        var server = await StartServerAsync("--EmbeddingCache:UnloadIdleEncodersAfter=00:00:01");
        var texts = Wire.Texts(seed: 21, count: 3);
        var computed = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });

        await Wait.UntilAsync(() => server.Log.Contains("Encoder of all-MiniLM-L6-v2 unloaded", StringComparison.Ordinal), "the idle encoder to be unloaded");
        var hit = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
        Assert.All(hit.Sources, s => Assert.Equal(RowSource.Cached, s));
        Assert.Equal(computed.Vectors.Data, hit.Vectors.Data);
        var miss = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "a text never seen" } });
        Assert.Equal(RowSource.Computed, Assert.Single(miss.Sources));
    }

    [Fact]
    public async Task Broken_model_folders_give_clear_errors_and_the_other_models_keep_serving()
    {
        string models = Path.Combine(Artifacts.Path, "models");
        var first = await StartServerAsync();
        string miniLm = Path.Combine(models, Wire.MiniLM);
        await first.StopAsync();

        MakeFolder("no-vocab", onnxFrom: Path.Combine(miniLm, "model.onnx"), vocab: false);
        MakeFolder("not-onnx", onnxFrom: null, vocab: true);
        File.WriteAllText(Path.Combine(models, "not-onnx", "model.onnx"), "this is not an ONNX graph");
        MakeFolder("odd-pooling", onnxFrom: Path.Combine(miniLm, "model.onnx"), vocab: true);
        Directory.CreateDirectory(Path.Combine(models, "odd-pooling", "1_Pooling"));
        File.WriteAllText(Path.Combine(models, "odd-pooling", "1_Pooling", "config.json"),
            """{"word_embedding_dimension": 384, "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}""");

        var server = await StartServerAsync();
        foreach (var (name, file) in new[] { ("no-vocab", "vocab.txt"), ("not-onnx", "model.onnx"), ("odd-pooling", "config.json") })
        {
            var error = await Assert.ThrowsAsync<RpcException>(async () =>
                await server.Client.EmbedAsync(new EmbedRequest { Model = name, Kind = Kind.Document, Texts = { "hello" } }));
            Output.WriteLine($"{name}: {error.StatusCode}: {error.Status.Detail}");
            Assert.Equal(StatusCode.FailedPrecondition, error.StatusCode);
            Assert.Contains(file, error.Status.Detail, StringComparison.Ordinal);
            var good = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "hello" } });
            Assert.Equal(1u, good.Vectors.Count);
        }
        var listed = (await server.Client.ListModelsAsync(new ListModelsRequest())).Models;
        foreach (var name in new[] { "no-vocab", "not-onnx", "odd-pooling" })
        {
            var info = Assert.Single(listed, m => m.Name == name);
            Assert.False(info.CanCompute);
            Assert.NotEmpty(info.Error);
        }
        Assert.True(Assert.Single(listed, m => m.Name == Wire.MiniLM).CanCompute);

        void MakeFolder(string name, string? onnxFrom, bool vocab)
        {
            string folder = Path.Combine(models, name);
            Directory.CreateDirectory(folder);
            if (onnxFrom is not null) File.Copy(onnxFrom, Path.Combine(folder, "model.onnx"));
            if (vocab) File.Copy(Path.Combine(miniLm, "vocab.txt"), Path.Combine(folder, "vocab.txt"));
        }
    }
}
