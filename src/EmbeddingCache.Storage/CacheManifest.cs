using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EmbeddingCache.Storage;

/// <summary>
/// <c>embeddings/&lt;model&gt;/manifest.json</c>: what the vectors are (dims, dtype, the fingerprint of the
/// model that made them) and how many there are. Keys follow the research project's convention; keys
/// this store does not know are kept when it rewrites the file.
/// </summary>
internal sealed class CacheManifest
{
    public const string FileName = "manifest.json";
    public const int FormatVersion = 1;

    private const string SnapshotKey = "snapshot";

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private JsonObject? _original;

    public required string ModelName { get; init; }

    public required int Dims { get; set; }

    public required VectorDType DType { get; set; }

    public required string Fingerprint { get; set; }

    public bool StoreOnly { get; set; }

    public string? BaseModel { get; set; }

    public string? HuggingFaceUrl { get; set; }

    public DateTimeOffset CreatedAt { get; init; } = DateTimeOffset.UtcNow;

    public CacheDescriptor ToDescriptor() => new()
    {
        Dims = Dims,
        DType = DType,
        Fingerprint = Fingerprint,
        StoreOnly = StoreOnly,
        BaseModel = BaseModel,
        HuggingFaceUrl = HuggingFaceUrl,
    };

    /// <summary>Reads a manifest. Null with a null problem when there is none; null with a problem when it is unusable.</summary>
    public static CacheManifest? TryRead(string path, string modelName, out string? problem)
    {
        problem = null;
        byte[] content;
        try
        {
            content = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            return null;
        }

        try
        {
            if (JsonNode.Parse(content, documentOptions: StrictJson) is not JsonObject json)
            {
                problem = "not a JSON object";
                return null;
            }

            int? version = Number(json, "format_version");
            if (version is not FormatVersion)
            {
                problem = $"format_version {version?.ToString(CultureInfo.InvariantCulture) ?? "missing or not an integer"}, expected {FormatVersion}";
                return null;
            }

            int? dims = Number(json, "dims");
            VectorDType? dtype = NpyLayout.ParseDescr(Text(json, "dtype"));
            string? fingerprint = Text(json, "fingerprint");
            bool? storeOnly = json["store_only"] switch
            {
                null => false,
                JsonValue value when value.TryGetValue(out bool flag) => flag,
                _ => null,
            };
            problem = (dims, dtype, fingerprint, storeOnly) switch
            {
                (not (>= 1 and <= CacheDescriptor.MaxDims), _, _, _) => $"dims missing, not an integer or not within 1..{CacheDescriptor.MaxDims}",
                (_, null, _, _) => "dtype missing or not '<f4' or '<f2'",
                (_, _, null, _) => "fingerprint missing or not a string",
                (_, _, _, null) => "store_only not true or false",
                _ => null,
            };
            if (problem is not null)
            {
                return null;
            }

            // The research convention's informational keys never decide whether vectors are served: unreadable means unset.
            DateTimeOffset createdAt = DateTimeOffset.TryParse(Text(json, "created_at"), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var created)
                ? created
                : DateTimeOffset.UtcNow;
            return new CacheManifest
            {
                ModelName = modelName,
                Dims = dims!.Value,
                DType = dtype!.Value,
                Fingerprint = fingerprint!,
                StoreOnly = storeOnly!.Value,
                BaseModel = Text(json, "base_model"),
                HuggingFaceUrl = Text(json, "huggingface_url"),
                CreatedAt = createdAt,
                _original = json,
            };
        }
        catch (JsonException exception)
        {
            problem = $"not valid JSON ({exception.Message})";
            return null;
        }
    }

    /// <summary>Duplicate keys make a manifest ambiguous (which dims?); refuse them instead of guessing.</summary>
    private static readonly JsonDocumentOptions StrictJson = new() { AllowDuplicateProperties = false };

    private static int? Number(JsonObject json, string key) =>
        json[key] is JsonValue value && value.GetValueKind() == JsonValueKind.Number && value.TryGetValue(out int number) ? number : null;

    private static string? Text(JsonObject json, string key)
    {
        try
        {
            return json[key] is JsonValue value && value.GetValueKind() == JsonValueKind.String ? value.GetValue<string>() : null;
        }
        catch (InvalidOperationException)
        {
            return null; // an escaped lone surrogate: no .NET string holds it faithfully
        }
    }

    public void Write(string path, long queryRows, long documentRows, long bytes, int segmentRows, bool sync)
    {
        JsonObject json = _original is null ? [] : (JsonObject)_original.DeepClone();
        json["created_at"] = FormatTime(CreatedAt);
        json["updated_at"] = FormatTime(DateTimeOffset.UtcNow);
        json["model_name"] = ModelName;
        json["base_model"] = BaseModel;
        json["huggingface_url"] = HuggingFaceUrl;
        json["size_mb"] = Math.Round(bytes / (1024.0 * 1024.0), 3);
        json["bytes"] = bytes;
        json["dims"] = Dims;
        json["dtype"] = DType.NpyDescr();
        json["fingerprint"] = Fingerprint;
        json["store_only"] = StoreOnly;
        json["format_version"] = FormatVersion;
        json["counts"] = new JsonObject { [VectorKindNames.Query] = queryRows, [VectorKindNames.Document] = documentRows };
        json["segment_rows"] = segmentRows;
        _original = json;
        AtomicFile.Write(path, Encoding.UTF8.GetBytes(json.ToJsonString(Indented) + "\n"), sync);
    }

    /// <summary>
    /// True when the cache is a copy <c>embcache snapshot</c> wrote (the <c>snapshot</c> key) and no Invalidate has
    /// emptied it since: its vectors are shipped data, refused rather than dropped when the model's fingerprint differs.
    /// </summary>
    public bool FromSnapshot => _original?[SnapshotKey] is JsonObject;

    /// <summary>Drops the snapshot mark; the next <see cref="Write"/> writes the manifest without it.</summary>
    public void EndSnapshotMark() => _original?.Remove(SnapshotKey);

    /// <summary>Writes this manifest, as read, as the manifest of a snapshot copy: the copy's counts and where it came from.</summary>
    public void WriteSnapshotCopy(string path, long queryRows, long documentRows, long bytes, DateTimeOffset createdAt)
    {
        JsonObject json = _original is null ? [] : (JsonObject)_original.DeepClone();
        json[SnapshotKey] = new JsonObject
        {
            ["created_at"] = FormatTime(createdAt),
            ["source_fingerprint"] = Fingerprint,
            ["rows"] = new JsonObject { [VectorKindNames.Query] = queryRows, [VectorKindNames.Document] = documentRows },
        };
        var copy = (CacheManifest)MemberwiseClone();
        copy._original = json;
        copy.Write(path, queryRows, documentRows, bytes, Number(json, "segment_rows") ?? new StorageOptions().SegmentRows, sync: true);
    }

    public static string FormatTime(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    /// <summary>True when a kind manifest parses as a JSON object; it is only informative, so that is all recovery checks.</summary>
    public static bool IsReadableJson(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllBytes(path)) is JsonObject;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}
