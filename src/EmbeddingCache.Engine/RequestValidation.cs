using System.Runtime.InteropServices;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine;

/// <summary>Checks of the rows and texts a client sends, each failing with the field named.</summary>
internal static class RequestValidation
{
    public static void RowLimit(int rows, string field, EngineOptions options)
    {
        if (rows > options.MaxRowsPerRequest)
        {
            CacheRequestException.Throw(CacheErrorKind.ResourceExhausted,
                $"{field} has {rows} entries; at most {options.MaxRowsPerRequest} are allowed per request: split it into smaller requests");
        }
    }

    public static void Texts(IReadOnlyList<string> texts, EngineOptions options)
    {
        RowLimit(texts.Count, "texts", options);
        for (int i = 0; i < texts.Count; i++)
        {
            if (texts[i].Length > options.MaxTextLength)
            {
                CacheRequestException.Throw(CacheErrorKind.ResourceExhausted,
                    $"texts[{i}] is {texts[i].Length} characters long; at most {options.MaxTextLength} are allowed " +
                    "(the model reads only its first few hundred tokens anyway)");
            }
        }
    }

    public static void Ids(IReadOnlyList<string> ids, EngineOptions options)
    {
        RowLimit(ids.Count, "ids", options);
        for (int i = 0; i < ids.Count; i++)
        {
            if (ids[i].Length == 0)
            {
                CacheRequestException.ThrowInvalid("ids", $"ids[{i}] is empty; every id must be a non-empty string");
            }
            if (ids[i].Length > options.MaxIdLength)
            {
                CacheRequestException.ThrowInvalid("ids", $"ids[{i}] is {ids[i].Length} characters long; at most {options.MaxIdLength} are allowed");
            }
        }
    }

    /// <summary>Decodes packed little-endian rows into float32, refusing NaN and infinity.</summary>
    public static float[] FiniteRows(ReadOnlySpan<byte> data, int count, int dims, VectorDType dtype)
    {
        var rows = new float[checked(count * dims)];
        if (dtype == VectorDType.Float16)
        {
            System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(data), rows);
        }
        else
        {
            MemoryMarshal.Cast<byte, float>(data).CopyTo(rows);
        }
        for (int i = 0; i < rows.Length; i++)
        {
            if (!float.IsFinite(rows[i]))
            {
                CacheRequestException.ThrowInvalid("vectors.data",
                    $"vectors row {i / dims} column {i % dims} is {rows[i]}; only finite values can be stored");
            }
        }
        return rows;
    }
}
