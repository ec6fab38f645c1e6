using System.Text.Json;

namespace EmbeddingCache.Inference;

/// <summary>
/// Reads <see cref="ModelSettings"/> from a model folder: the sentence-transformers export files first, then
/// our manifest.json over them.
/// </summary>
internal static class ModelSettingsReader
{
    /// <summary>[CLS], one piece, [SEP]: the fewest tokens a model can be fed.</summary>
    private const int MinTokens = 3;

    /// <summary>Where a Dense module's weights are read from, inside its folder.</summary>
    private const string DenseWeightsFileName = "model.safetensors";

    private static readonly JsonDocumentOptions JsonOptions = new()
    {
        AllowTrailingCommas = true,
        CommentHandling = JsonCommentHandling.Skip,
        // {"pooling": "mean", "pooling": "cls"} asks for two things; refuse rather than pick one.
        AllowDuplicateProperties = false,
    };

    public static ModelSettings Read(string directory)
    {
        PoolingMode? pooling = null;
        bool? normalize = null;
        IReadOnlyList<DenseLayer> dense = [];
        int? maxTokens = null;
        int? positionLimit = null;
        var queryPrefix = "";
        var documentPrefix = "";
        var similarity = SimilarityFunction.Cosine;
        var lowerCase = true;
        int? tokenDims = null;
        int? dims = null;
        string? onnxFile = null;
        string? baseModel = null;
        string? huggingFaceUrl = null;
        var storeFloat16 = false;

        var lowercasedBySentenceTransformers = false;
        var poolingFolder = ModelDefinition.DefaultPoolingFolder;
        using (var modules = ReadJson(directory, ModelDefinition.ModulesFileName, JsonValueKind.Array))
        {
            if (modules is not null)
            {
                var stack = ReadModuleStack(directory, modules.Root, modules.Path);
                poolingFolder = stack.PoolingFolder ?? poolingFolder;
                dense = stack.Dense;
                normalize = stack.Normalize;
            }
        }

        using (var poolingConfig = ReadJson(directory, Path.Combine(poolingFolder, ModelDefinition.ModuleConfigFileName)))
        {
            if (poolingConfig is not null)
            {
                var (path, root) = (poolingConfig.Path, poolingConfig.Root);
                pooling = ReadPoolingConfig(root, path);
                tokenDims = GetInt(root, "word_embedding_dimension", path, 1, ModelSettings.MaxDims);
            }
        }

        using (var sbert = ReadJson(directory, ModelDefinition.SentenceBertConfigFileName))
        {
            if (sbert is not null)
            {
                var (path, root) = (sbert.Path, sbert.Root);
                maxTokens = GetInt(root, "max_seq_length", path, MinTokens, ModelSettings.MaxTokensLimit) ?? maxTokens;
                lowercasedBySentenceTransformers = GetBool(root, "do_lower_case", path) == true;
            }
        }

        using (var stConfig = ReadJson(directory, ModelDefinition.SentenceTransformersConfigFileName))
        {
            if (stConfig is not null)
            {
                var (path, root) = (stConfig.Path, stConfig.Root);
                (queryPrefix, documentPrefix) = ReadPrompts(root, path);
                if (GetString(root, "similarity_fn_name", path) is { } name)
                {
                    similarity = ParseSimilarity(name, path, "similarity_fn_name");
                }
            }
        }

        using (var tokenizerConfig = ReadJson(directory, ModelDefinition.TokenizerConfigFileName))
        {
            if (tokenizerConfig is not null)
            {
                var (path, root) = (tokenizerConfig.Path, tokenizerConfig.Root);
                lowerCase = GetBool(root, "do_lower_case", path) ?? lowerCase;

                // Tokenizers without a limit say so with a huge sentinel (1e30); only a real limit counts.
                if (maxTokens is null && root.TryGetProperty("model_max_length", out var limit) && limit.ValueKind == JsonValueKind.Number
                    && limit.TryGetInt32(out var value) && value is >= MinTokens and <= ModelSettings.MaxTokensLimit)
                {
                    maxTokens = value;
                }
            }
        }

        // sentence-transformers lowercases the input itself when its config says so, whatever the tokenizer does.
        lowerCase |= lowercasedBySentenceTransformers;

        using (var transformerConfig = ReadJson(directory, ModelDefinition.TransformerConfigFileName))
        {
            if (transformerConfig is not null)
            {
                var (path, root) = (transformerConfig.Path, transformerConfig.Root);
                positionLimit = GetInt(root, "max_position_embeddings", path, MinTokens, int.MaxValue);
                tokenDims ??= GetInt(root, "hidden_size", path, 1, ModelSettings.MaxDims);
            }
        }

        using (var manifest = ReadJson(directory, ModelDefinition.ManifestFileName))
        {
            if (manifest is not null)
            {
                var (path, root) = (manifest.Path, manifest.Root);
                if (GetString(root, "pooling", path) is { } poolingName)
                {
                    pooling = ParsePooling(poolingName, path);
                }

                normalize = GetBool(root, "normalize", path) ?? normalize;
                maxTokens = GetInt(root, "max_tokens", path, MinTokens, ModelSettings.MaxTokensLimit) ?? maxTokens;
                queryPrefix = GetString(root, "query_prefix", path) ?? queryPrefix;
                documentPrefix = GetString(root, "document_prefix", path) ?? documentPrefix;
                if (GetString(root, "similarity_fn_name", path) is { } name)
                {
                    similarity = ParseSimilarity(name, path, "similarity_fn_name");
                }

                lowerCase = GetBool(root, "lower_case", path) ?? lowerCase;
                dims = GetInt(root, "dims", path, 1, ModelSettings.MaxDims);
                onnxFile = GetRelativePath(root, "onnx_file", path);
                baseModel = GetString(root, "base_model", path);
                huggingFaceUrl = GetString(root, "huggingface_url", path);
                if (GetString(root, "storage_dtype", path) is { } storageDType)
                {
                    storeFloat16 = ParseStorageDType(storageDType, path);
                }
            }
        }

        // Never more tokens than the model has positions for, whoever asked.
        if (maxTokens is int requested && positionLimit is int limitFromModel && requested > limitFromModel)
        {
            maxTokens = limitFromModel;
        }

        CheckDenseWidths(directory, dense, tokenDims);
        return new ModelSettings
        {
            Pooling = pooling,
            Dense = dense,
            // A graph's own pooled output is taken as it is; pooling done here is normalised unless the folder says not to.
            Normalize = normalize ?? pooling is not null,
            Similarity = similarity,
            MaxTokens = maxTokens ?? new ModelSettings().MaxTokens,
            QueryPrefix = queryPrefix,
            DocumentPrefix = documentPrefix,
            LowerCase = lowerCase,
            Dims = dims ?? (dense.Count > 0 ? dense[^1].OutFeatures : tokenDims),
            OnnxFile = onnxFile,
            BaseModel = baseModel,
            HuggingFaceUrl = huggingFaceUrl,
            StoreFloat16 = storeFloat16,
        };
    }

    /// <summary>The pooling names manifest.json takes, as sentence-transformers' Pooling(pooling_mode=...) names them.</summary>
    public const string PoolingNames = "'mean', 'cls', 'max', 'mean_sqrt_len_tokens', 'weightedmean' or 'lasttoken'";

    /// <summary>Maps our manifest's pooling names to a mode.</summary>
    public static PoolingMode ParsePooling(string name, string path) => name.Trim().ToLowerInvariant() switch
    {
        "mean" => PoolingMode.Mean,
        "cls" => PoolingMode.Cls,
        "max" => PoolingMode.Max,
        "mean_sqrt_len_tokens" => PoolingMode.MeanSqrtLength,
        "weightedmean" => PoolingMode.WeightedMean,
        "lasttoken" => PoolingMode.LastToken,
        _ => throw Bad(path, $"asks for pooling '{name}'; supported are {PoolingNames}"),
    };

    /// <summary>The name of a pooling mode in manifest.json (and in the fingerprint and ListModels).</summary>
    public static string NameOf(PoolingMode mode) => mode switch
    {
        PoolingMode.Mean => "mean",
        PoolingMode.Cls => "cls",
        PoolingMode.Max => "max",
        PoolingMode.MeanSqrtLength => "mean_sqrt_len_tokens",
        PoolingMode.WeightedMean => "weightedmean",
        PoolingMode.LastToken => "lasttoken",
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown pooling mode."),
    };

    /// <summary>The name of a similarity function, as similarity_fn_name spells it.</summary>
    public static string NameOf(SimilarityFunction similarity) => similarity switch
    {
        SimilarityFunction.Cosine => "cosine",
        SimilarityFunction.Dot => "dot",
        SimilarityFunction.Euclidean => "euclidean",
        SimilarityFunction.Manhattan => "manhattan",
        _ => throw new ArgumentOutOfRangeException(nameof(similarity), similarity, "Unknown similarity function."),
    };

    private static SimilarityFunction ParseSimilarity(string name, string path, string key) => name.Trim().ToLowerInvariant() switch
    {
        "cosine" => SimilarityFunction.Cosine,
        "dot" or "dot_product" => SimilarityFunction.Dot,
        "euclidean" => SimilarityFunction.Euclidean,
        "manhattan" => SimilarityFunction.Manhattan,
        _ => throw Bad(path, $"has {key} '{name}'; supported are 'cosine', 'dot', 'euclidean' and 'manhattan'"),
    };

    /// <summary>
    /// The prefixes as sentence-transformers' encode_query and encode_document pick them: the <c>query</c> prompt, and the first
    /// of <c>document</c>, <c>passage</c>, <c>corpus</c>; where there is none, the prompt <c>default_prompt_name</c> names.
    /// </summary>
    private static (string Query, string Document) ReadPrompts(JsonElement root, string path)
    {
        if (!root.TryGetProperty("prompts", out var prompts) || prompts.ValueKind != JsonValueKind.Object)
        {
            return ("", "");
        }

        var defaultPrompt = "";
        if (GetString(root, "default_prompt_name", path) is { Length: > 0 } defaultName)
        {
            defaultPrompt = GetString(prompts, defaultName, path)
                ?? throw Bad(path, $"has default_prompt_name '{defaultName}', which is not one of its prompts");
        }

        var query = GetString(prompts, "query", path) ?? defaultPrompt;
        var document = GetString(prompts, "document", path) ?? GetString(prompts, "passage", path) ?? GetString(prompts, "corpus", path) ?? defaultPrompt;
        return (query, document);
    }

    /// <summary>What modules.json stacks after the Transformer: the Pooling folder, the Dense modules, whether Normalize ends it.</summary>
    private static (string? PoolingFolder, IReadOnlyList<DenseLayer> Dense, bool Normalize) ReadModuleStack(string directory, JsonElement root, string path)
    {
        string? poolingFolder = null;
        var dense = new List<DenseLayer>();
        var normalize = false;
        var position = 0;
        foreach (var module in root.EnumerateArray())
        {
            var type = GetString(module, "type", path) ?? throw Bad(path, $"has a module (number {position}) without a 'type'");
            var folder = GetString(module, "path", path) ?? "";
            var kind = type[(type.LastIndexOf('.') + 1)..];
            var misplaced = kind switch
            {
                "Transformer" => position != 0,
                "Pooling" => position != 1,
                "Dense" => poolingFolder is null || normalize,
                "Normalize" => poolingFolder is null || normalize,
                _ => throw Bad(path, $"has a {type} module, which this server cannot run; supported are Transformer, Pooling, Dense and Normalize"),
            };
            if (misplaced)
            {
                throw Bad(path, $"has its {type} module at position {position}; supported is Transformer, Pooling, then any Dense modules, then Normalize");
            }

            if (kind != "Transformer" && folder.Length > 0)
            {
                CheckInside(folder, path, "names the module folder");
            }

            switch (kind)
            {
                case "Pooling":
                    poolingFolder = folder.Length > 0 ? folder : ModelDefinition.DefaultPoolingFolder;
                    break;
                case "Dense":
                    dense.Add(ReadDense(directory, folder));
                    break;
                case "Normalize":
                    normalize = true;
                    break;
            }

            position++;
        }

        return (poolingFolder, dense, normalize);
    }

    private static DenseLayer ReadDense(string directory, string folder)
    {
        using var config = ReadJson(directory, Path.Combine(folder, ModelDefinition.ModuleConfigFileName))
            ?? throw Bad(Path.Combine(directory, folder, ModelDefinition.ModuleConfigFileName), "is missing: a Dense module needs its config");
        var (path, root) = (config.Path, config.Root);
        var inFeatures = GetInt(root, "in_features", path, 1, ModelSettings.MaxDims) ?? throw Bad(path, "has no 'in_features'");
        var outFeatures = GetInt(root, "out_features", path, 1, ModelSettings.MaxDims) ?? throw Bad(path, "has no 'out_features'");
        var hasBias = GetBool(root, "bias", path) ?? true;
        var activationName = GetString(root, "activation_function", path) ?? throw Bad(path, "has no 'activation_function'");
        var activation = activationName.StartsWith("torch.nn.", StringComparison.Ordinal)
            ? activationName[(activationName.LastIndexOf('.') + 1)..] switch
            {
                "Identity" => DenseActivation.Identity,
                "Tanh" => DenseActivation.Tanh,
                "ReLU" => DenseActivation.ReLU,
                "Sigmoid" => DenseActivation.Sigmoid,
                _ => (DenseActivation?)null,
            }
            : null;
        if (activation is null)
        {
            throw Bad(path, $"has activation_function '{activationName}'; supported are torch.nn's Identity, Tanh, ReLU and Sigmoid");
        }

        var weightsPath = Path.Combine(directory, folder, DenseWeightsFileName);
        if (!File.Exists(weightsPath))
        {
            throw new ModelFolderException(
                $"'{weightsPath}' is missing: a Dense module's weights are read from {DenseWeightsFileName} (convert a pytorch_model.bin with safetensors).", weightsPath);
        }

        var tensors = SafetensorsFile.Read(weightsPath);
        var weight = Parameter(tensors, "linear.weight", [outFeatures, inFeatures], weightsPath);
        var bias = hasBias ? Parameter(tensors, "linear.bias", [outFeatures], weightsPath) : null;
        return new DenseLayer(folder, weightsPath, inFeatures, outFeatures, activation.Value, weight, bias);
    }

    private static float[] Parameter(IReadOnlyDictionary<string, SafetensorsFile.Tensor> tensors, string name, int[] shape, string path)
    {
        if (!tensors.TryGetValue(name, out var tensor))
        {
            throw Bad(path, $"has no tensor '{name}' (it has {string.Join(", ", tensors.Keys)})");
        }

        if (!tensor.Shape.SequenceEqual(shape))
        {
            throw Bad(path, $"has '{name}' of shape [{string.Join(", ", tensor.Shape)}] where its config asks for [{string.Join(", ", shape)}]");
        }

        if (!tensor.Values.All(float.IsFinite))
        {
            throw Bad(path, $"has '{name}' with values that are NaN or infinite");
        }

        return tensor.Values;
    }

    /// <summary>Each Dense module must take the width the one before it gives, the first the token vectors' width.</summary>
    private static void CheckDenseWidths(string directory, IReadOnlyList<DenseLayer> dense, int? tokenDims)
    {
        var width = tokenDims;
        foreach (var layer in dense)
        {
            if (width is int expected && expected != layer.InFeatures)
            {
                var path = Path.Combine(directory, layer.Folder, ModelDefinition.ModuleConfigFileName);
                throw Bad(path, $"has in_features {layer.InFeatures}, but the vectors reaching it are {expected} wide");
            }

            width = layer.OutFeatures;
        }
    }

    private static void CheckInside(string folder, string path, string what)
    {
        if (Path.IsPathRooted(folder) || folder.Split('/', '\\').Contains("..") || folder.Contains('\0', StringComparison.Ordinal))
        {
            throw Bad(path, $"{what} '{folder}', which is not inside the model folder");
        }
    }

    private static string? GetRelativePath(JsonElement root, string name, string path)
    {
        var value = GetString(root, name, path);
        if (value is not null)
        {
            if (value.Trim().Length == 0)
            {
                throw Bad(path, $"has an empty '{name}'");
            }

            CheckInside(value, path, $"has '{name}'");
        }

        return value;
    }

    /// <summary>True for "float16", false for "float32"; anything else is refused with the file named.</summary>
    private static bool ParseStorageDType(string name, string path) => name.Trim().ToLowerInvariant() switch
    {
        "float32" => false,
        "float16" => true,
        _ => throw Bad(path, $"asks for storage_dtype '{name}'; supported are 'float32' and 'float16'"),
    };

    private static PoolingMode ReadPoolingConfig(JsonElement root, string path)
    {
        if (GetBool(root, "include_prompt", path) == false)
        {
            throw Bad(path, "has include_prompt false (the prompt's tokens left out of pooling), which this server does not do");
        }

        var modes = new List<string>();
        foreach (var property in root.EnumerateObject())
        {
            if (property.Name.StartsWith("pooling_mode_", StringComparison.Ordinal) && property.Value.ValueKind == JsonValueKind.True)
            {
                modes.Add(property.Name);
            }
        }

        return modes switch
        {
            ["pooling_mode_mean_tokens"] => PoolingMode.Mean,
            ["pooling_mode_cls_token"] => PoolingMode.Cls,
            ["pooling_mode_max_tokens"] => PoolingMode.Max,
            ["pooling_mode_mean_sqrt_len_tokens"] => PoolingMode.MeanSqrtLength,
            ["pooling_mode_weightedmean_tokens"] => PoolingMode.WeightedMean,
            ["pooling_mode_lasttoken"] => PoolingMode.LastToken,
            [] => throw Bad(path, "enables no pooling mode"),
            _ => throw Bad(path, $"asks for pooling {string.Join(" + ", modes)} (concatenated); one pooling_mode_* alone is supported"),
        };
    }

    /// <summary>The file parsed, or null when there is none; a file whose top level is not <paramref name="kind"/> is refused.</summary>
    private static JsonFile? ReadJson(string directory, string relativePath, JsonValueKind kind = JsonValueKind.Object)
    {
        var path = Path.Combine(directory, relativePath);
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            var document = JsonDocument.Parse(File.ReadAllBytes(path), JsonOptions);
            if (document.RootElement.ValueKind != kind)
            {
                document.Dispose();
                throw Bad(path, kind == JsonValueKind.Array ? "is not a JSON array" : "is not a JSON object");
            }

            return new JsonFile(path, document);
        }
        catch (JsonException e)
        {
            throw new ModelFolderException($"'{path}' is not valid JSON: {e.Message}", path, e);
        }
        catch (IOException e)
        {
            throw new ModelFolderException($"'{path}' cannot be read: {e.Message}", path, e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new ModelFolderException($"'{path}' cannot be read: {e.Message}", path, e);
        }
    }

    private static string? GetString(JsonElement element, string name, string path)
    {
        if (element.ValueKind != JsonValueKind.Object || !element.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.String)
        {
            throw Bad(path, $"has '{name}' that is not a string");
        }

        try
        {
            return value.GetString();
        }
        catch (InvalidOperationException)
        {
            throw Bad(path, $"has '{name}' with an escaped lone surrogate, which is not text");
        }
    }

    private static bool? GetBool(JsonElement element, string name, string path)
    {
        if (element.ValueKind != JsonValueKind.Object || !element.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(path, $"has '{name}' that is not true or false"),
        };
    }

    private static int? GetInt(JsonElement element, string name, string path, int min, int max)
    {
        if (element.ValueKind != JsonValueKind.Object || !element.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var result) && result >= min && result <= max
            ? result
            : throw Bad(path, $"has '{name}' {value.GetRawText()}, which is not an integer from {min} to {max}");
    }

    private static ModelFolderException Bad(string path, string what) => new($"'{path}' {what}.", path);

    /// <summary>A parsed JSON file and where it came from, for error messages.</summary>
    private sealed class JsonFile(string path, JsonDocument document) : IDisposable
    {
        public string Path => path;

        public JsonElement Root => document.RootElement;

        public void Dispose() => document.Dispose();
    }
}
