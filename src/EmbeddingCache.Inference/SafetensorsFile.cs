using System.Buffers.Binary;
using System.Text.Json;

namespace EmbeddingCache.Inference;

/// <summary>
/// A reader of the safetensors format (Hugging Face's weight files), just enough for a Dense module: an 8-byte
/// little-endian header length, a JSON header naming each tensor's dtype, shape and byte range, then the bytes.
/// F32, F16 and BF16 (and F64) tensors are widened to float32; anything malformed is refused naming the file.
/// </summary>
internal static class SafetensorsFile
{
    /// <summary>Larger headers are not weight files; safetensors itself caps them at 100 MB.</summary>
    private const long MaxHeaderBytes = 100_000_000;

    /// <summary>A module's weights are small; a file past 2 GiB is not one we mean to hold in memory.</summary>
    private const long MaxFileBytes = int.MaxValue;

    /// <summary>A tensor as float32, row-major, with its shape.</summary>
    public sealed record Tensor(int[] Shape, float[] Values);

    /// <summary>Every tensor of the file by name.</summary>
    /// <exception cref="ModelFolderException">The file cannot be read or is not safetensors.</exception>
    public static IReadOnlyDictionary<string, Tensor> Read(string path)
    {
        byte[] bytes;
        try
        {
            var length = new FileInfo(path).Length;
            if (length > MaxFileBytes)
            {
                throw Bad(path, $"is {length} bytes; a Dense module's weights of at most {MaxFileBytes} bytes are expected");
            }

            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelFolderException($"'{path}' cannot be read: {e.Message}", path, e);
        }

        if (bytes.Length < 8)
        {
            throw Bad(path, "is too short to be a safetensors file");
        }

        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > MaxHeaderBytes || (long)headerLength > bytes.Length - 8)
        {
            throw Bad(path, $"declares a {headerLength}-byte header in a {bytes.Length}-byte file; it is not a safetensors file");
        }

        var data = bytes.AsMemory(8 + (int)headerLength);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
            if (header.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw Bad(path, "has a header that is not a JSON object");
            }

            foreach (var entry in header.RootElement.EnumerateObject())
            {
                if (entry.Name != "__metadata__")
                {
                    tensors.Add(entry.Name, ReadTensor(path, entry.Name, entry.Value, data.Span));
                }
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or OverflowException or ArgumentException)
        {
            throw new ModelFolderException($"'{path}' has a header that is not valid safetensors JSON: {e.Message}", path, e);
        }

        return tensors;
    }

    private static Tensor ReadTensor(string path, string name, JsonElement entry, ReadOnlySpan<byte> data)
    {
        var dtype = entry.GetProperty("dtype").GetString();
        var shape = entry.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray();
        var offsets = entry.GetProperty("data_offsets").EnumerateArray().Select(o => o.GetInt64()).ToArray();
        long count = 1;
        foreach (var dim in shape)
        {
            count = dim < 0 ? throw Bad(path, $"gives tensor '{name}' a negative dimension") : checked(count * dim);
        }

        var width = dtype switch
        {
            "F32" => 4,
            "F16" or "BF16" => 2,
            "F64" => 8,
            _ => throw Bad(path, $"stores tensor '{name}' as {dtype}; F32, F16, BF16 or F64 is supported"),
        };
        if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] > data.Length || offsets[1] - offsets[0] != count * width)
        {
            throw Bad(path, $"gives tensor '{name}' ({dtype} [{string.Join(", ", shape)}]) the byte range [{string.Join(", ", offsets)}], which does not fit its shape or the file");
        }

        var bytes = data.Slice((int)offsets[0], (int)(count * width));
        var values = new float[count];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = dtype switch
            {
                "F32" => BinaryPrimitives.ReadSingleLittleEndian(bytes.Slice(i * 4)),
                "F16" => (float)BinaryPrimitives.ReadHalfLittleEndian(bytes.Slice(i * 2)),
                // bfloat16 is the upper half of a float32.
                "BF16" => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes.Slice(i * 2)) << 16),
                _ => (float)BinaryPrimitives.ReadDoubleLittleEndian(bytes.Slice(i * 8)),
            };
        }

        return new Tensor(shape, values);
    }

    private static ModelFolderException Bad(string path, string what) => new($"'{path}' {what}.", path);
}
