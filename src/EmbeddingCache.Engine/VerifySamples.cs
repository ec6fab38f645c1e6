using System.Collections.Concurrent;
using System.Text.Json;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine;

/// <summary>
/// The exact tokenizer inputs of a model's first computed rows, per kind, in
/// <c>embeddings/&lt;model&gt;/verify-samples.&lt;kind&gt;.jsonl</c>: the cache keeps hashes of texts, not texts, and
/// <c>embcache verify</c> needs some texts to recompute and compare with what is stored. Best effort: a lost
/// sample line costs nothing but a smaller sample.
/// </summary>
public sealed class VerifySamples(string embeddingsDirectory)
{
    /// <summary>Texts kept per model and kind.</summary>
    public const int MaxPerKind = 256;

    private readonly ConcurrentDictionary<string, int> counts = new(StringComparer.Ordinal);

    /// <summary>The sample file of a model's kind.</summary>
    public static string PathOf(string embeddingsDirectory, string model, VectorKind kind) =>
        Path.Combine(embeddingsDirectory, model, $"verify-samples.{kind.Name()}.jsonl");

    /// <summary>The tokenizer inputs recorded for a model's kind (none when there is no file).</summary>
    public static IReadOnlyList<string> Read(string embeddingsDirectory, string model, VectorKind kind)
    {
        string path = PathOf(embeddingsDirectory, model, kind);
        if (!File.Exists(path)) return [];
        var inputs = new List<string>();
        foreach (var line in File.ReadLines(path))
        {
            try
            {
                if (JsonSerializer.Deserialize<string>(line) is { } input) inputs.Add(input);
            }
            catch (JsonException)
            {
                // A torn last line after a crash: the lines before it stand.
            }
        }
        return inputs;
    }

    /// <summary>Appends inputs of freshly computed rows until the kind has <see cref="MaxPerKind"/>.</summary>
    internal void Record(string model, VectorKind kind, IEnumerable<string> inputs)
    {
        string path = PathOf(embeddingsDirectory, model, kind);
        lock (counts)
        {
            int count = counts.GetOrAdd(path, p => File.Exists(p) ? File.ReadLines(p).Count() : 0);
            if (count >= MaxPerKind) return;
            var lines = inputs.Take(MaxPerKind - count).Select(input => JsonSerializer.Serialize(input)).ToList();
            try
            {
                File.AppendAllLines(path, lines);
                counts[path] = count + lines.Count;
            }
            catch (IOException)
            {
                // Best effort (a full disk, say): the cache's own writes report their errors.
            }
        }
    }
}
