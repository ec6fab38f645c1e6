using System.Runtime.InteropServices;
using System.Text.Json;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// Model folders as researchers bring them (sentence-transformers stacks with Dense modules and every pooling mode,
/// optimum exports, the ONNX backend's onnx/ layout and its variants), served exactly or refused. The expected vectors
/// are computed apart from the server: token ids from the reference tokenizer (tests/data/reference), hidden states from a
/// raw ONNX Runtime session here, one unpadded text at a time, and pooling, Dense and normalisation in numpy
/// (tests/python/model_folders.py). None of the server's tokenizer, batching, padding, pooling or Dense code is involved.
/// </summary>
public sealed class ModelExportTests(ITestOutputHelper output) : ServerTest(output)
{
    private const int Width = 384;

    private string Models => Path.Combine(Artifacts.Path, "models");

    private string MiniLMOnnx => Path.Combine(Models, Wire.MiniLM, "model.onnx");

    [Fact]
    public async Task A_dense_module_and_every_pooling_mode_give_the_vectors_numpy_computes_from_the_raw_hidden_states()
    {
        var server = await StartWithMiniLMAsync();
        string hidden = await RawHiddenStatesAsync();
        var folders = new (string Name, string Pooling, (int Out, string Activation, string Weight, string Bias)[] Dense, bool Normalize)[]
        {
            ("st-dense", "mean", [(256, "tanh", "F32", "F32")], true),
            ("st-dense-half", "cls", [(128, "identity", "BF16", "F16")], false),
            ("st-max", "max", [], true),
            ("st-lasttoken", "lasttoken", [], false),
            ("st-weightedmean", "weightedmean", [], false),
            ("st-mean-sqrt-len", "mean_sqrt_len_tokens", [], false),
        };
        var texts = ReferenceTexts();
        foreach (var (name, pooling, dense, normalize) in folders)
        {
            string folder = WriteSentenceTransformersFolder(name, pooling);
            var denseFolders = new List<string>();
            for (int i = 0; i < dense.Length; i++)
            {
                var (outFeatures, activation, weight, bias) = dense[i];
                string module = Path.Combine(folder, $"{2 + i}_Dense");
                await Python.RunAsync("model_folders.py", "make-dense", module, Width.ToString(), outFeatures.ToString(), activation, weight, bias, (7 + i).ToString());
                denseFolders.Add(module);
            }
            WriteModules(folder, dense.Length, normalize);

            var served = await server.Client.EmbedAsync(new EmbedRequest { Model = name, Kind = Kind.Document, Texts = { texts } });
            var expected = await ExpectedAsync(hidden, new { pooling, dense = denseFolders, normalize });
            int dims = dense.Length > 0 ? dense[^1].Out : Width;
            Assert.Equal((uint)dims, served.Vectors.Dims);
            AssertRowsEqual(name, expected, Wire.Floats(served.Vectors), dims, requiredCosine: 0.99999);
        }

        var listed = (await server.Client.ListModelsAsync(new ListModelsRequest())).Models;
        var withDense = Assert.Single(listed, m => m.Name == "st-dense");
        Assert.Equal(256u, withDense.Dims);
        Assert.Equal("mean", withDense.Pooling);
        Assert.Equal(["2_Dense 384->256 tanh"], withDense.Dense);
        Assert.True(withDense.Normalize);
        Assert.Equal(256u, withDense.MaxTokens);
        Assert.Equal("weightedmean", Assert.Single(listed, m => m.Name == "st-weightedmean").Pooling);
        // The cache's width follows the Dense module.
        var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(Artifacts.Path, "embeddings", "st-dense", "manifest.json"))).RootElement;
        Assert.Equal(256, manifest.GetProperty("dims").GetInt32());
    }

    [Fact]
    public async Task An_optimum_export_is_served_from_its_sentence_embedding_and_one_without_pooling_information_is_refused()
    {
        var server = await StartWithMiniLMAsync();
        string hidden = await RawHiddenStatesAsync();
        // These folders take 512 tokens (tokenizer_config's limit, with no sentence_bert_config), so the texts the reference
        // tokenizer cut at MiniLM's 256 are left out.
        var kept = UntruncatedTexts();
        var texts = ReferenceTexts().Where((_, i) => kept.Contains(i)).ToArray();
        async Task<float[]> ExpectedKeptAsync(object pipeline) =>
            (await ExpectedAsync(hidden, pipeline)).Chunk(Width).Where((_, i) => kept.Contains(i)).SelectMany(row => row).ToArray();

        // optimum-cli's layout: config.json, tokenizer files, model.onnx; no sentence-transformers files.
        string pooled = WriteOptimumFolder("optimum-pooled");
        await Python.RunAsync("model_folders.py", "pool-graph", MiniLMOnnx, Path.Combine(pooled, "model.onnx"));
        var served = await server.Client.EmbedAsync(new EmbedRequest { Model = "optimum-pooled", Kind = Kind.Document, Texts = { texts } });
        // The graph's own masked mean, as it is: not normalised again.
        AssertRowsEqual("optimum-pooled", await ExpectedKeptAsync(new { pooling = "mean", normalize = false }), Wire.Floats(served.Vectors), Width, requiredCosine: 0.99999);
        var info = Assert.Single((await server.Client.ListModelsAsync(new ListModelsRequest())).Models, m => m.Name == "optimum-pooled");
        Assert.Equal("sentence_embedding output", info.Pooling);
        Assert.False(info.Normalize);
        Assert.Equal(512u, info.MaxTokens);

        string bare = WriteOptimumFolder("optimum-bare");
        File.CreateSymbolicLink(Path.Combine(bare, "model.onnx"), MiniLMOnnx);
        var refused = await Assert.ThrowsAsync<RpcException>(async () =>
            await server.Client.EmbedAsync(new EmbedRequest { Model = "optimum-bare", Kind = Kind.Document, Texts = { "hello" } }));
        Output.WriteLine($"optimum-bare: {refused.StatusCode}: {refused.Status.Detail}");
        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains("\"pooling\"", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("manifest.json", refused.Status.Detail, StringComparison.Ordinal);
        var good = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "hello" } });
        Assert.Equal(1u, good.Vectors.Count);
        Assert.Contains("does not say how to pool", Assert.Single((await server.Client.ListModelsAsync(new ListModelsRequest())).Models, m => m.Name == "optimum-bare").Error);

        // Setting the key the message names makes it serve.
        File.WriteAllText(Path.Combine(bare, "manifest.json"), """{"pooling": "mean", "normalize": true}""");
        var fixedUp = await server.Client.EmbedAsync(new EmbedRequest { Model = "optimum-bare", Kind = Kind.Document, Texts = { texts } });
        AssertRowsEqual("optimum-bare", await ExpectedKeptAsync(new { pooling = "mean", normalize = true }), Wire.Floats(fixedUp.Vectors), Width, requiredCosine: 0.99999);
    }

    [Fact]
    public async Task The_onnx_backend_layout_and_an_onnx_file_variant_are_served_each_with_its_fingerprint_and_an_unknown_module_is_refused()
    {
        var server = await StartWithMiniLMAsync();
        var texts = ReferenceTexts();
        var reference = NpyFile.ReadFloat32(Path.Combine(AppContext.BaseDirectory, "reference", $"{Wire.MiniLM}.document.npy"));

        // SentenceTransformer(..., backend="onnx").save(...): onnx/model.onnx next to the sentence-transformers files.
        string backend = WriteSentenceTransformersFolder("st-onnx", "mean", onnxAtRoot: false);
        WriteModules(backend, denseCount: 0, normalize: true);
        File.CreateSymbolicLink(Path.Combine(backend, "onnx", "model.onnx"), MiniLMOnnx);
        var plain = await server.Client.EmbedAsync(new EmbedRequest { Model = "st-onnx", Kind = Kind.Document, Texts = { texts } });
        AssertRowsEqual("st-onnx", reference, Wire.Floats(plain.Vectors), Width, requiredCosine: 0.9999);

        // The same folder with an optimised variant beside it, chosen by onnx_file; the variant negates the hidden states,
        // so its vectors tell which file ran.
        string variant = WriteSentenceTransformersFolder("st-onnx-o3", "mean", onnxAtRoot: false);
        WriteModules(variant, denseCount: 0, normalize: true);
        File.CreateSymbolicLink(Path.Combine(variant, "onnx", "model.onnx"), MiniLMOnnx);
        await Python.RunAsync("model_folders.py", "negate-graph", MiniLMOnnx, Path.Combine(variant, "onnx", "model_O3.onnx"));
        File.WriteAllText(Path.Combine(variant, "manifest.json"), """{"onnx_file": "onnx/model_O3.onnx"}""");
        var optimised = await server.Client.EmbedAsync(new EmbedRequest { Model = "st-onnx-o3", Kind = Kind.Document, Texts = { texts } });
        AssertRowsEqual("st-onnx-o3", reference.Select(v => -v).ToArray(), Wire.Floats(optimised.Vectors), Width, requiredCosine: 0.9999);
        Assert.NotEqual(plain.Fingerprint, optimised.Fingerprint);

        var listed = (await server.Client.ListModelsAsync(new ListModelsRequest())).Models;
        Assert.Equal("onnx/model.onnx", Assert.Single(listed, m => m.Name == "st-onnx").OnnxFile);
        Assert.Equal("onnx/model_O3.onnx", Assert.Single(listed, m => m.Name == "st-onnx-o3").OnnxFile);
        Assert.Equal("model.onnx", Assert.Single(listed, m => m.Name == Wire.MiniLM).OnnxFile);

        string odd = WriteSentenceTransformersFolder("st-layernorm", "mean");
        File.WriteAllText(Path.Combine(odd, "modules.json"), """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"idx": 2, "name": "2", "path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"}]
            """);
        var refused = await Assert.ThrowsAsync<RpcException>(async () =>
            await server.Client.EmbedAsync(new EmbedRequest { Model = "st-layernorm", Kind = Kind.Document, Texts = { "hello" } }));
        Output.WriteLine($"st-layernorm: {refused.StatusCode}: {refused.Status.Detail}");
        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains("sentence_transformers.models.LayerNorm", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(1u, (await server.Client.EmbedAsync(new EmbedRequest { Model = "st-onnx", Kind = Kind.Query, Texts = { "hello" } })).Vectors.Count);
    }

    [Fact]
    public async Task A_cls_dot_product_model_is_scored_by_its_own_measure_and_says_so()
    {
        var server = await StartWithMiniLMAsync();
        string[] queries = ["what is dense retrieval?", "how do plants make food"];
        string[] documents =
        [
            "Dense retrieval encodes queries and passages as vectors and ranks passages by similarity.",
            "Photosynthesis turns light, water and carbon dioxide into sugar in the leaves of plants.",
            "The stock market closed higher on Friday.",
            "Retrieval",
        ];
        foreach (var similarity in new[] { "dot", "euclidean", "manhattan" })
        {
            string name = $"st-cls-{similarity}";
            string folder = WriteSentenceTransformersFolder(name, "cls", similarity: similarity);
            WriteModules(folder, denseCount: 0, normalize: false);

            var scored = await server.Client.ScoreAsync(new ScoreRequest { Model = name, Queries = { queries }, DocumentTexts = { documents }, TopK = 4 });
            var q = Wire.Floats((await server.Client.EmbedAsync(new EmbedRequest { Model = name, Kind = Kind.Query, Texts = { queries } })).Vectors);
            var d = Wire.Floats((await server.Client.EmbedAsync(new EmbedRequest { Model = name, Kind = Kind.Document, Texts = { documents } })).Vectors);
            var scores = MemoryMarshal.Cast<byte, float>(scored.Scores.Span).ToArray();
            // Reranking (a candidate list per query) scores by the same measure.
            var rerank = new ScoreRequest { Model = name, Queries = { queries } };
            foreach (var _ in queries)
            {
                rerank.Candidates.Add(new QueryCandidates { Ids = { documents.Select((_, j) => $"doc{j}") }, Texts = { documents } });
            }
            var reranked = await server.Client.ScoreAsync(rerank);
            Assert.Equal(scores, MemoryMarshal.Cast<byte, float>(reranked.CandidateScores.Span).ToArray());
            for (int i = 0; i < queries.Length; i++)
            {
                var expected = new double[documents.Length];
                for (int j = 0; j < documents.Length; j++)
                {
                    var a = q.AsSpan(i * Width, Width);
                    var b = d.AsSpan(j * Width, Width);
                    expected[j] = similarity switch
                    {
                        "dot" => Dot(a, b),
                        "euclidean" => -Distance(a, b, squared: true),
                        _ => -Distance(a, b, squared: false),
                    };
                    Assert.True(Math.Abs(expected[j] - scores[i * documents.Length + j]) <= 1e-4 * Math.Max(1, Math.Abs(expected[j])),
                        $"{similarity} q{i} d{j}: expected {expected[j]}, Score gave {scores[i * documents.Length + j]}");
                }
                var ranked = Enumerable.Range(0, documents.Length).OrderByDescending(j => expected[j]).ToArray();
                Assert.Equal(ranked, scored.Top[i].Indexes.Select(index => (int)index).ToArray());
            }
            // Unnormalised CLS vectors: a dot product is not a cosine here, so the measure is visible in the scores.
            if (similarity == "dot") Assert.Contains(scores, s => Math.Abs(s) > 1.5f);

            var info = Assert.Single((await server.Client.ListModelsAsync(new ListModelsRequest())).Models, m => m.Name == name);
            Assert.Equal("cls", info.Pooling);
            Assert.Equal(similarity, info.Similarity);
            Assert.False(info.Normalize);
        }
        Assert.Equal("cosine", Assert.Single((await server.Client.ListModelsAsync(new ListModelsRequest())).Models, m => m.Name == Wire.MiniLM).Similarity);
    }

    /// <summary>The texts of tests/data/reference, in the order of its token ids and vectors.</summary>
    private static string[] ReferenceTexts() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "reference", "texts.json"))).RootElement
            .EnumerateArray().Select(t => t.GetProperty("text").GetString()!).ToArray();

    /// <summary>The indexes of the reference texts whose token ids were not cut at MiniLM's 256 tokens.</summary>
    private static HashSet<int> UntruncatedTexts() =>
        ReferenceTokens().Select((entry, i) => (entry, i)).Where(t => !t.entry.GetProperty("truncated").GetBoolean()).Select(t => t.i).ToHashSet();

    private static JsonElement[] ReferenceTokens() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "reference", "tokens.json"))).RootElement
            .GetProperty(Wire.MiniLM).GetProperty("document").EnumerateArray().ToArray();

    /// <summary>
    /// last_hidden_state of each reference text's token ids (from the reference tokenizer) through a raw ONNX Runtime session
    /// on MiniLM's file, one text at a time: hidden.f32 (every text's rows, concatenated) and lengths.json in a new folder.
    /// </summary>
    private async Task<string> RawHiddenStatesAsync()
    {
        string folder = Path.Combine(Artifacts.Path, "hidden-states");
        Directory.CreateDirectory(folder);
        var tokens = ReferenceTokens()
            .Select(t => t.GetProperty("ids").EnumerateArray().Select(id => id.GetInt64()).ToArray()).ToArray();
        using var session = new InferenceSession(MiniLMOnnx);
        using var runOptions = new RunOptions();
        await using var hidden = File.Create(Path.Combine(folder, "hidden.f32"));
        foreach (var ids in tokens)
        {
            long[] shape = [1, ids.Length];
            using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, shape);
            using var maskValue = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, ids.Length).ToArray(), shape);
            using var typesValue = OrtValue.CreateTensorValueFromMemory(new long[ids.Length], shape);
            using var results = session.Run(runOptions, ["input_ids", "attention_mask", "token_type_ids"], [idsValue, maskValue, typesValue], ["last_hidden_state"]);
            hidden.Write(MemoryMarshal.AsBytes(results[0].GetTensorDataAsSpan<float>()));
        }
        File.WriteAllText(Path.Combine(folder, "lengths.json"), JsonSerializer.Serialize(tokens.Select(ids => ids.Length)));
        return folder;
    }

    private async Task<float[]> ExpectedAsync(string hiddenStates, object pipeline)
    {
        string output = Path.Combine(Artifacts.Path, $"expected-{Guid.NewGuid():N}.npy");
        await Python.RunAsync("model_folders.py", "expect", hiddenStates, JsonSerializer.Serialize(pipeline), output);
        return NpyFile.ReadFloat32(output);
    }

    /// <summary>A server on the test's root; its start writes MiniLM's files, which every folder here is made of.</summary>
    private async Task<ServerProcess> StartWithMiniLMAsync()
    {
        var server = await StartServerAsync();
        Assert.True(File.Exists(MiniLMOnnx), $"{MiniLMOnnx} was not provisioned by the server's start");
        return server;
    }

    /// <summary>
    /// A sentence-transformers folder of MiniLM's files: config.json, vocab.txt, the tokenizer and sentence-bert configs,
    /// 1_Pooling/config.json with the one mode, config_sentence_transformers.json; the ONNX file is the caller's unless it
    /// is MiniLM's at the root. modules.json is written by <see cref="WriteModules"/>.
    /// </summary>
    private string WriteSentenceTransformersFolder(string name, string pooling, string similarity = "cosine", bool onnxAtRoot = true)
    {
        string folder = WriteOptimumFolder(name);
        if (onnxAtRoot) File.CreateSymbolicLink(Path.Combine(folder, "model.onnx"), MiniLMOnnx);
        else Directory.CreateDirectory(Path.Combine(folder, "onnx"));
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        string chosen = pooling switch { "mean" => "mean_tokens", "cls" => "cls_token", "max" => "max_tokens", "weightedmean" => "weightedmean_tokens", _ => pooling };
        var modes = new[] { "cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken" }
            .ToDictionary(mode => $"pooling_mode_{mode}", mode => (object)(mode == chosen));
        modes["word_embedding_dimension"] = Width;
        modes["include_prompt"] = true;
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), JsonSerializer.Serialize(modes));
        File.WriteAllText(Path.Combine(folder, "sentence_bert_config.json"), """{"max_seq_length": 256, "do_lower_case": false}""");
        File.WriteAllText(Path.Combine(folder, "config_sentence_transformers.json"),
            $$"""{"prompts": {"query": "", "document": ""}, "default_prompt_name": null, "similarity_fn_name": "{{similarity}}"}""");
        return folder;
    }

    /// <summary>modules.json: Transformer, Pooling, <paramref name="denseCount"/> Dense modules (2_Dense, 3_Dense, ...), then Normalize if asked.</summary>
    private static void WriteModules(string folder, int denseCount, bool normalize)
    {
        var modules = new List<object>
        {
            new { idx = 0, name = "0", path = "", type = "sentence_transformers.models.Transformer" },
            new { idx = 1, name = "1", path = "1_Pooling", type = "sentence_transformers.models.Pooling" },
        };
        for (int i = 0; i < denseCount; i++) modules.Add(new { idx = 2 + i, name = $"{2 + i}", path = $"{2 + i}_Dense", type = "sentence_transformers.models.Dense" });
        if (normalize) modules.Add(new { idx = modules.Count, name = $"{modules.Count}", path = $"{modules.Count}_Normalize", type = "sentence_transformers.models.Normalize" });
        File.WriteAllText(Path.Combine(folder, "modules.json"), JsonSerializer.Serialize(modules));
    }

    /// <summary>What optimum-cli writes besides the graph: the transformer's config.json and the tokenizer files.</summary>
    private string WriteOptimumFolder(string name)
    {
        string folder = Path.Combine(Models, name);
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(Models, Wire.MiniLM, "vocab.txt"), Path.Combine(folder, "vocab.txt"));
        File.WriteAllText(Path.Combine(folder, "config.json"), """{"model_type": "bert", "hidden_size": 384, "max_position_embeddings": 512}""");
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"do_lower_case": true, "model_max_length": 512}""");
        return folder;
    }

    private void AssertRowsEqual(string model, float[] expected, float[] actual, int dims, double requiredCosine)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worstCosine = 1, worstRelative = 0;
        for (int i = 0; i < expected.Length / dims; i++)
        {
            var e = expected.AsSpan(i * dims, dims);
            var a = actual.AsSpan(i * dims, dims);
            worstCosine = Math.Min(worstCosine, Wire.Cosine(e, a));
            // Cosine hides a wrong scale (a wrong divisor in a mean): the difference is compared to the length too.
            double difference = Distance(e, a, squared: true);
            worstRelative = Math.Max(worstRelative, difference / Math.Sqrt(Dot(e, e)));
        }
        Output.WriteLine($"{model}: {expected.Length / dims} rows, worst cosine {worstCosine:F7}, worst |expected - served| / |expected| {worstRelative:E2}");
        Assert.True(worstCosine >= requiredCosine, $"{model}: worst cosine {worstCosine:F7} < {requiredCosine}");
        Assert.True(worstRelative <= 1e-4, $"{model}: worst relative difference {worstRelative:E2}");
    }

    /// <summary>The L2 distance (<paramref name="squared"/> differences) or the L1 distance, in double precision.</summary>
    private static double Distance(ReadOnlySpan<float> a, ReadOnlySpan<float> b, bool squared)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += squared ? Math.Pow(a[i] - b[i], 2) : Math.Abs(a[i] - b[i]);
        return squared ? Math.Sqrt(sum) : sum;
    }

    private static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += (double)a[i] * b[i];
        return sum;
    }
}
