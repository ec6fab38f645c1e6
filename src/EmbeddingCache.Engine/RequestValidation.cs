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
                $"{field} has {rows} entries; at most {options.MaxRowsPerRequest} are allowed per request: split it into smaller requests, " +
                $"or raise {EngineOptions.SettingName(nameof(EngineOptions.MaxRowsPerRequest))}");
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
                    $"(the model reads only its first few hundred tokens anyway; the limit is {EngineOptions.SettingName(nameof(EngineOptions.MaxTextLength))})");
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
                CacheRequestException.ThrowInvalid("ids", $"ids[{i}] is {ids[i].Length} characters long; at most {options.MaxIdLength} are allowed ({EngineOptions.SettingName(nameof(EngineOptions.MaxIdLength))})");
            }
        }
    }

    /// <summary>
    /// Refuses a reply of <paramref name="rows"/> vectors that would be larger than
    /// <see cref="EngineOptions.MaxSendMessageBytes"/>, before any row is gathered or computed.
    /// </summary>
    public static void ReplyRows(int rows, int dims, VectorDType dtype, EngineOptions options)
    {
        long bytes = (long)rows * dims * dtype.BytesPerElement() + rows + ReplyOverheadBytes;
        if (bytes > options.MaxSendMessageBytes)
        {
            long fit = Math.Max(0, (options.MaxSendMessageBytes - ReplyOverheadBytes) / ((long)dims * dtype.BytesPerElement() + 1));
            CacheRequestException.Throw(CacheErrorKind.ResourceExhausted,
                $"the reply of {rows} rows x {dims} dims ({dtype}) would be about {bytes} bytes, over the {options.MaxSendMessageBytes} " +
                $"bytes of {EngineOptions.SettingName(nameof(EngineOptions.MaxSendMessageBytes))}: ask for at most {fit} rows per call, or raise it " +
                "(and the client's max receive message length)");
        }
    }

    /// <summary>
    /// Bound on what an Embed or Get reply holds besides its vectors and its one byte per row source: the vectors'
    /// count, dims and dtype, the fingerprint, the counts and the field tags.
    /// </summary>
    private const int ReplyOverheadBytes = 512;

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
