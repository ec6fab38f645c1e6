using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EmbeddingCache.Storage;

/// <summary>
/// <c>embeddings/&lt;model&gt;/&lt;kind&gt;/manifest.json</c>: what the writer has committed of one kind, published for
/// followers. <see cref="Generation"/> names the kind folder's content (it changes on every invalidation or reset and never
/// repeats); <see cref="Sequence"/> is the committed rows of that generation, the sum of the segments' rows, and only
/// grows within it. Written atomically, after the rows it counts are committed.
/// </summary>
internal sealed record KindManifest(int Dims, VectorDType DType, long Generation, long Sequence, IReadOnlyList<KindManifestSegment> Segments)
{
    /// <summary>Writes the manifest of a generation with its segments' committed rows.</summary>
    public static void Write(string path, VectorKind kind, NpyLayout layout, long generation, IReadOnlyList<Segment> segments, bool sync)
    {
        var files = new JsonArray();
        long rows = 0;
        foreach (Segment segment in segments)
        {
            int segmentRows = segment.Rows;
            rows += segmentRows;
            files.Add(new JsonObject
            {
                ["file"] = Path.GetFileName(segment.NpyPath),
                ["sidecar"] = Path.GetFileName(segment.SidecarPath),
                ["rows"] = segmentRows,
                ["sealed"] = segment.IsSealed,
            });
        }

        var json = new JsonObject
        {
            ["kind"] = kind.Name(),
            ["dims"] = layout.Dims,
            ["dtype"] = layout.DType.NpyDescr(),
            ["generation"] = generation,
            ["sequence"] = rows,
            ["rows"] = rows,
            ["format_version"] = CacheManifest.FormatVersion,
            ["updated_at"] = CacheManifest.FormatTime(DateTimeOffset.UtcNow),
            ["segments"] = files,
        };
        AtomicFile.Write(path, Encoding.UTF8.GetBytes(json.ToJsonString(Indented) + "\n"), sync);
    }

    /// <summary>Reads a kind manifest. Null with a null problem when there is none; null with a problem when it is unusable.</summary>
    public static KindManifest? TryRead(string path, out string? problem)
    {
        problem = null;
        byte[] content;
        try
        {
            content = File.ReadAllBytes(path);
        }
        catch (Exception exception) when (exception is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }

        try
        {
            if (JsonNode.Parse(content) is not JsonObject json)
            {
                problem = "not a JSON object";
                return null;
            }

            long? generation = Integer(json, "generation");
            long? sequence = Integer(json, "sequence");
            long? dims = Integer(json, "dims");
            VectorDType? dtype = json["dtype"] is JsonValue descr && descr.GetValueKind() == JsonValueKind.String ? NpyLayout.ParseDescr(descr.GetValue<string>()) : null;
            if (generation is not { } g || sequence is not { } s || dims is not (>= 1 and <= CacheDescriptor.MaxDims) || dtype is not { } d
                || json["segments"] is not JsonArray segmentArray)
            {
                problem = "generation, sequence, dims, dtype or segments missing or not valid (written by a server that does not publish for followers?)";
                return null;
            }

            var segments = new List<KindManifestSegment>(segmentArray.Count);
            long total = 0;
            foreach (JsonNode? node in segmentArray)
            {
                if (node is not JsonObject segment || segment["file"] is not JsonValue file || file.GetValueKind() != JsonValueKind.String
                    || Segment.NumberOf(file.GetValue<string>()) is not { } number || Integer(segment, "rows") is not (>= 0 and <= StorageOptions.MaxSegmentRows) || segment["sealed"] is not JsonValue sealedFlag
                    || !sealedFlag.TryGetValue(out bool isSealed))
                {
                    problem = $"segment entry {segments.Count} is not a {{file, rows, sealed}} record";
                    return null;
                }

                int rows = (int)Integer(segment, "rows")!.Value;
                total += rows;
                segments.Add(new KindManifestSegment(number, rows, isSealed));
            }

            if (total != s)
            {
                problem = $"sequence {s} is not the sum of the segments' rows ({total})";
                return null;
            }

            return new KindManifest((int)dims, d, g, s, segments);
        }
        catch (JsonException exception)
        {
            problem = $"not valid JSON ({exception.Message})";
            return null;
        }
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private static long? Integer(JsonObject json, string key) =>
        json[key] is JsonValue value && value.GetValueKind() == JsonValueKind.Number && value.TryGetValue(out long number) ? number : null;
}

/// <summary>One segment as a kind manifest lists it: its file number, committed rows and whether it is sealed.</summary>
internal readonly record struct KindManifestSegment(int Number, int Rows, bool Sealed);
