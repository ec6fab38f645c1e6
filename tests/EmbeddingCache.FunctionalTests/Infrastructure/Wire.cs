using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using EmbeddingCache.Protocol.V1;
using Google.Protobuf;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>Small conversions between test data and the wire format, written independently of the server.</summary>
public static class Wire
{
    public const string MiniLM = "all-MiniLM-L6-v2";

    public static float[] Floats(Vectors vectors)
    {
        Assert.Equal(DType.Float32, vectors.Dtype);
        Assert.Equal((int)(vectors.Count * vectors.Dims * 4), vectors.Data.Length);
        return MemoryMarshal.Cast<byte, float>(vectors.Data.Span).ToArray();
    }

    public static byte[] Row(Vectors vectors, int row)
    {
        int rowBytes = (int)vectors.Dims * (vectors.Dtype == DType.Float16 ? 2 : 4);
        return vectors.Data.Span.Slice(row * rowBytes, rowBytes).ToArray();
    }

    public static Vectors Pack(float[] values, int dims) => new()
    {
        Count = (uint)(values.Length / dims),
        Dims = (uint)dims,
        Dtype = DType.Float32,
        Data = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan())),
    };

    /// <summary>Deterministic vectors with no zero row.</summary>
    public static float[] RandomRows(Random random, int rows, int dims)
    {
        var values = new float[rows * dims];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        for (int r = 0; r < rows; r++) values[r * dims] = 1f + r;
        return values;
    }

    /// <summary>The content key as DESIGN defines it: the first 16 bytes of SHA-256 of the exact tokenizer input.</summary>
    public static string ContentKeyHex(string tokenizerInput) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(tokenizerInput)).AsSpan(0, 16));

    /// <summary>Short realistic texts, different for each seed.</summary>
    public static string[] Texts(int seed, int count, string prefix = "passage")
    {
        string[] words = ["retrieval", "dense", "vector", "query", "corpus", "ranking", "neural", "index", "cache", "token",
            "passage", "answer", "question", "model", "encoder", "café", "naïve", "東京", "😀", "résumé"];
        var random = new Random(seed);
        var texts = new string[count];
        for (int i = 0; i < count; i++)
        {
            int length = 3 + random.Next(20);
            var sb = new StringBuilder($"{prefix} {seed}-{i}:");
            for (int w = 0; w < length; w++) sb.Append(' ').Append(words[random.Next(words.Length)]);
            texts[i] = sb.ToString();
        }
        return texts;
    }

    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += a[i] * (double)b[i];
            na += a[i] * (double)a[i];
            nb += b[i] * (double)b[i];
        }
        return dot / Math.Sqrt(na * nb);
    }
}
