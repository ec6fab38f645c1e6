using System.Collections.Concurrent;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine;

/// <summary>
/// A model ready to serve: its cache and, when it can compute, its batcher. Store-only models
/// (vectors made elsewhere) have a cache and nothing else.
/// </summary>
internal sealed class ServedModel(string name, ModelCache cache, ModelDefinition? definition, EncodingBatcher? batcher)
{
    private long hits;
    private long misses;

    public string Name { get; } = name;
    public ModelCache Cache { get; } = cache;
    public ModelDefinition? Definition { get; } = definition;
    public EncodingBatcher? Batcher { get; } = batcher;
    public bool CanCompute => Batcher is not null;
    public long Hits => Interlocked.Read(ref hits);
    public long Misses => Interlocked.Read(ref misses);

    /// <summary>Vectors being computed right now, by kind and key, so that a key in flight twice is computed once.</summary>
    public ConcurrentDictionary<(VectorKind Kind, ContentKey Key), Task<float[]>> InFlight { get; } = new();

    /// <summary>The exact string fed to the tokenizer (and hashed into the content key) for a text of a kind.</summary>
    public string TokenizerInput(VectorKind kind, string text)
    {
        string prefix = Definition?.PrefixFor(kind == VectorKind.Query) ?? "";
        return prefix.Length == 0 ? text : string.Concat(prefix, text);
    }

    public void Count(int hitCount, int missCount)
    {
        if (hitCount > 0) Interlocked.Add(ref hits, hitCount);
        if (missCount > 0) Interlocked.Add(ref misses, missCount);
    }
}
