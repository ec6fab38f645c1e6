namespace EmbeddingCache.Storage.Tests;

/// <summary>
/// Deterministic test rows: row n has id "r{n}", key = key of "text {n}", and vector n + j/8, exact in
/// float32 for any test size and in float16 for n below 256.
/// </summary>
internal static class Rows
{
    public static ContentKey Key(int n) => ContentKey.FromText($"text {n}");

    public static string Id(int n) => $"r{n}";

    public static float[] Vector(int n, int dims, float offset = 0)
    {
        var vector = new float[dims];
        for (int j = 0; j < dims; j++)
        {
            vector[j] = n + (j / 8f) + offset;
        }

        return vector;
    }

    public static RowBatch Batch(int dims, IEnumerable<int> numbers, bool withKeys = true, bool withIds = true, float offset = 0)
    {
        var batch = new RowBatch(dims, 16);
        foreach (int n in numbers)
        {
            batch.Add(withKeys ? Key(n) : null, withIds ? Id(n) : null, Vector(n, dims, offset));
        }

        return batch;
    }

    public static CacheDescriptor Descriptor(int dims, VectorDType dtype = VectorDType.Float32, string fingerprint = "fp-1") =>
        new() { Dims = dims, DType = dtype, Fingerprint = fingerprint, BaseModel = "test/base", HuggingFaceUrl = null };

    /// <summary>Gathers float32 vectors by key; missing rows come back null.</summary>
    public static float[]?[] GatherKeys(VectorStore store, IReadOnlyList<ContentKey> keys)
    {
        byte[] buffer = new byte[keys.Count * store.Dims * 4];
        bool[] found = new bool[keys.Count];
        store.Gather(keys.ToArray(), VectorDType.Float32, buffer, found);
        return Split(buffer, found, store.Dims);
    }

    public static float[]?[] GatherIds(VectorStore store, IReadOnlyList<string> ids)
    {
        byte[] buffer = new byte[ids.Count * store.Dims * 4];
        bool[] found = new bool[ids.Count];
        store.GatherByIds(ids, VectorDType.Float32, buffer, found);
        return Split(buffer, found, store.Dims);
    }

    public static float[]? One(VectorStore store, int n) => GatherKeys(store, [Key(n)])[0];

    private static float[]?[] Split(byte[] buffer, bool[] found, int dims)
    {
        var result = new float[]?[found.Length];
        ReadOnlySpan<float> floats = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(buffer);
        for (int i = 0; i < found.Length; i++)
        {
            if (found[i])
            {
                result[i] = floats.Slice(i * dims, dims).ToArray();
            }
            else
            {
                Assert.All(floats.Slice(i * dims, dims).ToArray(), f => Assert.Equal(0f, f));
            }
        }

        return result;
    }
}
