using System.Text;
using System.Text.Json;
using CsCheck;
using EmbeddingCache.Fuzzing;
using Xunit.Abstractions;

namespace EmbeddingCache.Inference.Tests;

/// <summary>
/// Property-based fuzzing of the settings files of a model folder (our manifest.json and the sentence-transformers
/// export files): whatever they hold, reading the folder gives usable settings or a <see cref="ModelFolderException"/>
/// naming the file, never another exception, and never settings the files did not ask for.
/// </summary>
public sealed class ModelSettingsFuzzTests(ITestOutputHelper output)
{
    private const long Inputs = 10_000;

    /// <summary>Every settings file the reader opens, with the keys it reads from it.</summary>
    private static readonly (string File, string[] Keys)[] SettingsFiles =
    [
        (ModelDefinition.ManifestFileName, ["pooling", "normalize", "max_tokens", "query_prefix", "document_prefix", "lower_case", "dims", "base_model", "huggingface_url", "similarity_fn_name", "onnx_file"]),
        (ModelDefinition.ModulesFileName, ["idx", "name", "path", "type"]),
        (Path.Combine(ModelDefinition.DefaultPoolingFolder, ModelDefinition.ModuleConfigFileName),
            ["word_embedding_dimension", "pooling_mode_mean_tokens", "pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_lasttoken", "include_prompt"]),
        (ModelDefinition.SentenceBertConfigFileName, ["max_seq_length", "do_lower_case"]),
        (ModelDefinition.SentenceTransformersConfigFileName, ["prompts", "query", "document", "passage", "corpus", "default_prompt_name", "similarity_fn_name"]),
        (ModelDefinition.TokenizerConfigFileName, ["do_lower_case", "model_max_length"]),
        (ModelDefinition.TransformerConfigFileName, ["max_position_embeddings", "hidden_size"]),
    ];

    /// <summary>Values that a reader of each key meets in the wild and in anger.</summary>
    private static readonly Gen<string> KeyValue = Gen.Frequency(
        (3, JsonFuzz.OddScalar),
        (2, JsonFuzz.AnyValue),
        (2, Gen.Int[-5, 600].Select(n => n.ToString(System.Globalization.CultureInfo.InvariantCulture))),
        (2, Gen.OneOf("\"mean\"", "\"cls\"", "\"query: \"", "\"sentence_transformers.models.Pooling\"", "\"sentence_transformers.models.Normalize\"",
            "\"sentence_transformers.models.Dense\"", "\"sentence_transformers.models.LayerNorm\"", "\"dot\"", "\"query\"", "\"model.onnx\"",
            "\"1_Pooling\"", "\"../..\"", "\"/\"", "\"a/b\"", "\"\"", "1e30")));

    /// <summary>One settings file of a folder, holding its known keys with any values, or anything at all.</summary>
    private static readonly Gen<(string File, byte[] Content)> AnySettingsFile = Gen.Int[0, SettingsFiles.Length - 1].SelectMany(which =>
    {
        var (file, keys) = SettingsFiles[which];
        var knownKeys = Gen.Select(Gen.OneOf(keys), KeyValue).Array[0, 6]
            .Select(members => "{" + string.Join(",", members.DistinctBy(m => m.Item1).Select(m => JsonFuzz.Quote(m.Item1) + ":" + m.Item2)) + "}");
        return Gen.OneOf(
                Gen.Byte.Array[0, 200],
                JsonFuzz.TokenSoup.Select(Encoding.UTF8.GetBytes),
                JsonFuzz.AnyValue.Select(Encoding.UTF8.GetBytes),
                knownKeys.Select(Encoding.UTF8.GetBytes),
                knownKeys.Select(json => Encoding.UTF8.GetBytes($"[{json}]")),
                knownKeys.Select(json => Encoding.UTF8.GetBytes($"{{\"prompts\":{json}}}")),
                JsonFuzz.Nesting.Select(n => Encoding.UTF8.GetBytes($"{{\"{keys[0]}\":{n.Json}}}")))
            .Select(content => (file, content));
    });

    [Fact]
    public void Any_settings_file_gives_usable_settings_or_an_error_naming_it()
    {
        using var temp = new TempDirectory();
        long refused = 0;
        AnySettingsFile.Sample((file, content) =>
        {
            var folder = temp.Combine(Guid.NewGuid().ToString("N"));
            var path = Path.Combine(folder, file);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllBytes(path, content);
            try
            {
                var settings = ModelSettingsReader.Read(folder);
                Assert.InRange(settings.MaxTokens, 3, ModelSettings.MaxTokensLimit);
                Assert.True(settings.Dims is null or (>= 1 and <= ModelSettings.MaxDims), $"dims {settings.Dims}");
                Assert.True(settings.Pooling is null || Enum.IsDefined(settings.Pooling.Value));
            }
            catch (ModelFolderException e)
            {
                Interlocked.Increment(ref refused);
                Assert.StartsWith(folder, e.FilePath);
                Assert.Contains(Path.GetFileName(e.FilePath!), e.Message);
            }
            finally
            {
                Directory.Delete(folder, recursive: true);
            }
        }, iter: Inputs);
        output.WriteLine($"{Inputs} settings files read, {refused} refused with the file named, the rest gave usable settings");
        Assert.InRange(refused, 1, Inputs - 1);
    }

    /// <summary>A manifest.json key by key: each missing, right, out of range or of another type.</summary>
    private static readonly Gen<(JsonFuzz.Field[] Fields, (string Json, bool Readable) Extra)> Manifests = Gen.Select(
        Gen.Select(
            Gen.Frequency(
                (2, Gen.Const(new JsonFuzz.Field("pooling", null, true))),
                (3, Gen.OneOf("\"mean\"", "\"cls\"", "\" CLS \"", "\"Mean\"", "\"max\"", "\"lasttoken\"", "\"weightedmean\"").Select(p => new JsonFuzz.Field("pooling", p, true))),
                (2, Gen.OneOf("\"maximum\"", "\"\"", "\"mean_tokens\"", "1", "true", "[\"mean\"]").Select(p => new JsonFuzz.Field("pooling", p, false)))),
            JsonFuzz.OptionalBool("normalize"),
            JsonFuzz.Integer("max_tokens", 3, ModelSettings.MaxTokensLimit, required: false),
            JsonFuzz.OptionalString("query_prefix"),
            JsonFuzz.OptionalString("document_prefix")),
        Gen.Select(
            JsonFuzz.OptionalBool("lower_case"),
            JsonFuzz.Integer("dims", 1, ModelSettings.MaxDims, required: false),
            JsonFuzz.OptionalString("base_model"),
            JsonFuzz.OptionalString("huggingface_url")),
        JsonFuzz.ExtraMembers,
        (a, b, extra) => (new[] { a.Item1, a.Item2, a.Item3, a.Item4, a.Item5, b.Item1, b.Item2, b.Item3, b.Item4 }, extra));

    [Fact]
    public void A_manifest_is_honoured_key_by_key_or_refused_naming_the_key()
    {
        using var temp = new TempDirectory();
        long accepted = 0;
        Manifests.Sample((fields, extra) =>
        {
            var folder = temp.Combine(Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(folder);
            var json = JsonFuzz.Object(fields, extra.Json);
            File.WriteAllText(Path.Combine(folder, ModelDefinition.ManifestFileName), json);
            ModelSettings? settings = null;
            ModelFolderException? error = null;
            try
            {
                settings = ModelSettingsReader.Read(folder);
            }
            catch (ModelFolderException e)
            {
                error = e;
            }
            finally
            {
                Directory.Delete(folder, recursive: true);
            }

            bool acceptable = extra.Readable && fields.All(f => f.Acceptable);
            Assert.True(acceptable == (settings is not null), $"{(settings is null ? "refused" : "accepted")} ({error?.Message}): {json}");
            if (settings is null)
            {
                if (extra.Readable) Assert.Contains(fields.First(f => !f.Acceptable).Key, error!.Message);
                return;
            }

            Interlocked.Increment(ref accepted);
            var defaults = new ModelSettings();
            PoolingMode? pooling = Expected<string>(fields, "pooling")?.Trim().ToLowerInvariant() switch
            {
                null => defaults.Pooling,
                "cls" => PoolingMode.Cls,
                "max" => PoolingMode.Max,
                "lasttoken" => PoolingMode.LastToken,
                "weightedmean" => PoolingMode.WeightedMean,
                _ => PoolingMode.Mean,
            };
            Assert.Equal(pooling, settings.Pooling);
            // A graph's own pooled output is not normalised again unless the manifest asks.
            Assert.Equal(Expected<bool?>(fields, "normalize") ?? pooling is not null, settings.Normalize);
            Assert.Equal(Expected<int?>(fields, "max_tokens") ?? defaults.MaxTokens, settings.MaxTokens);
            Assert.Equal(Expected<string>(fields, "query_prefix") ?? defaults.QueryPrefix, settings.QueryPrefix);
            Assert.Equal(Expected<string>(fields, "document_prefix") ?? defaults.DocumentPrefix, settings.DocumentPrefix);
            Assert.Equal(Expected<bool?>(fields, "lower_case") ?? defaults.LowerCase, settings.LowerCase);
            Assert.Equal(Expected<int?>(fields, "dims"), settings.Dims);
            Assert.Equal(Expected<string>(fields, "base_model"), settings.BaseModel);
            Assert.Equal(Expected<string>(fields, "huggingface_url"), settings.HuggingFaceUrl);
        }, iter: Inputs);
        output.WriteLine($"{Inputs} generated manifest.json files, {accepted} accepted, each exactly when every key is right");
        Assert.True(accepted > 0);
    }

    private static T? Expected<T>(JsonFuzz.Field[] fields, string key) =>
        fields.Single(f => f.Key == key).Json is { } json ? JsonSerializer.Deserialize<T>(json) : default;
}
