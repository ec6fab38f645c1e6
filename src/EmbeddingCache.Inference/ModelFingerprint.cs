using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace EmbeddingCache.Inference;

/// <summary>
/// The hash that tells whether cached vectors were made by this exact model: the ONNX bytes, the tokenizer
/// bytes and every setting that changes a vector. Informational settings (base model, URL) and the similarity Score uses are left out.
/// </summary>
internal static class ModelFingerprint
{
    // Bump when the meaning of the hashed fields changes, so old caches are invalidated.
    private const string Version = "embeddingcache-model-fingerprint-v1";

    public static string Compute(string onnxPath, string tokenizerPath, ModelSettings settings)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        AppendField(hash, Version);
        AppendFile(hash, onnxPath);
        AppendField(hash, Path.GetFileName(tokenizerPath));
        AppendFile(hash, tokenizerPath);
        AppendField(hash, settings.PoolingName);
        AppendField(hash, settings.Normalize ? "normalize" : "raw");
        AppendField(hash, settings.MaxTokens.ToString(CultureInfo.InvariantCulture));
        AppendField(hash, settings.LowerCase ? "lowercase" : "cased");
        AppendField(hash, settings.QueryPrefix);
        AppendField(hash, settings.DocumentPrefix);

        // Added after the fields above, and only when there are some, so that folders without Dense modules (the built-ins)
        // keep the fingerprints their caches were made with.
        foreach (var dense in settings.Dense)
        {
            AppendField(hash, "dense");
            AppendField(hash, dense.ToString());
            AppendField(hash, dense.Bias is null ? "no bias" : "bias");
            AppendFile(hash, dense.WeightsPath);
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    // Each field is length-prefixed so that no two different settings produce the same byte stream.
    private static void AppendField(IncrementalHash hash, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, bytes.LongLength);
        hash.AppendData(length);
        hash.AppendData(bytes);
    }

    private static void AppendFile(IncrementalHash hash, string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(length, stream.Length);
            hash.AppendData(length);
            var buffer = ArrayPool<byte>.Shared.Rent(1 << 20);
            try
            {
                int read;
                while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
                {
                    hash.AppendData(buffer, 0, read);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFolderException($"'{path}' cannot be read: {e.Message}", path, e);
        }
    }
}
