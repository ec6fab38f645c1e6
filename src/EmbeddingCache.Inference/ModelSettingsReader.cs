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

    private static readonly JsonDocumentOptions JsonOptions = new()
    {
        AllowTrailingCommas = true,
        CommentHandling = JsonCommentHandling.Skip,
        // {"pooling": "mean", "pooling": "cls"} asks for two things; refuse rather than pick one.
        AllowDuplicateProperties = false,
    };

    public static ModelSettings Read(string directory)
    {
        var pooling = PoolingMode.Mean;
        var normalize = true;
        int? maxTokens = null;
        int? positionLimit = null;
        var queryPrefix = "";
        var documentPrefix = "";
        var lowerCase = true;
        int? dims = null;
        string? baseModel = null;
        string? huggingFaceUrl = null;
        var storeFloat16 = false;

        var lowercasedBySentenceTransformers = false;
        var poolingFolder = ModelDefinition.DefaultPoolingFolder;
        using (var modules = ReadJson(directory, ModelDefinition.ModulesFileName, JsonValueKind.Array))
        {
            if (modules is not null)
            {
                var (path, root) = (modules.Path, modules.Root);
                var hasNormalize = false;
                foreach (var module in root.EnumerateArray())
                {
                    var type = GetString(module, "type", path) ?? "";
                    if (type.EndsWith(".Pooling", StringComparison.Ordinal) && GetString(module, "path", path) is { Length: > 0 } folder)
                    {
                        if (Path.IsPathRooted(folder) || folder.Split('/', '\\').Contains("..") || folder.Contains('\0', StringComparison.Ordinal))
                        {
                            throw Bad(path, $"names the pooling folder '{folder}', which is not inside the model folder");
                        }

                        poolingFolder = folder;
                    }

                    hasNormalize |= type.EndsWith(".Normalize", StringComparison.Ordinal);
                }

                normalize = hasNormalize;
            }
        }

        using (var poolingConfig = ReadJson(directory, Path.Combine(poolingFolder, ModelDefinition.PoolingConfigFileName)))
        {
            if (poolingConfig is not null)
            {
                var (path, root) = (poolingConfig.Path, poolingConfig.Root);
                pooling = ReadPoolingConfig(root, path);
                dims = GetInt(root, "word_embedding_dimension", path, 1, ModelSettings.MaxDims) ?? dims;
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
                if (root.TryGetProperty("prompts", out var prompts) && prompts.ValueKind == JsonValueKind.Object)
                {
                    queryPrefix = GetString(prompts, "query", path) ?? queryPrefix;
                    documentPrefix = GetString(prompts, "document", path) ?? GetString(prompts, "passage", path) ?? documentPrefix;
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
                dims ??= GetInt(root, "hidden_size", path, 1, ModelSettings.MaxDims);
            }
        }

        if (maxTokens is int requested && positionLimit is int limitFromModel && requested > limitFromModel)
        {
            maxTokens = limitFromModel;
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
                lowerCase = GetBool(root, "lower_case", path) ?? lowerCase;
                dims = GetInt(root, "dims", path, 1, ModelSettings.MaxDims) ?? dims;
                baseModel = GetString(root, "base_model", path);
                huggingFaceUrl = GetString(root, "huggingface_url", path);
                if (GetString(root, "storage_dtype", path) is { } storageDType)
                {
                    storeFloat16 = ParseStorageDType(storageDType, path);
                }
            }
        }

        return new ModelSettings
        {
            Pooling = pooling,
            Normalize = normalize,
            MaxTokens = maxTokens ?? new ModelSettings().MaxTokens,
            QueryPrefix = queryPrefix,
            DocumentPrefix = documentPrefix,
            LowerCase = lowerCase,
            Dims = dims,
            BaseModel = baseModel,
            HuggingFaceUrl = huggingFaceUrl,
            StoreFloat16 = storeFloat16,
        };
    }

    /// <summary>Maps our manifest's pooling names to a mode.</summary>
    public static PoolingMode ParsePooling(string name, string path) => name.Trim().ToLowerInvariant() switch
    {
        "mean" => PoolingMode.Mean,
        "cls" => PoolingMode.Cls,
        _ => throw Bad(path, $"asks for pooling '{name}'; supported are 'mean' and 'cls'"),
    };

    /// <summary>True for "float16", false for "float32"; anything else is refused with the file named.</summary>
    private static bool ParseStorageDType(string name, string path) => name.Trim().ToLowerInvariant() switch
    {
        "float32" => false,
        "float16" => true,
        _ => throw Bad(path, $"asks for storage_dtype '{name}'; supported are 'float32' and 'float16'"),
    };

    private static PoolingMode ReadPoolingConfig(JsonElement root, string path)
    {
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
            [] => throw Bad(path, "enables no pooling mode"),
            _ => throw Bad(path, $"asks for pooling {string.Join(" + ", modes)}; supported are pooling_mode_mean_tokens or pooling_mode_cls_token alone"),
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
