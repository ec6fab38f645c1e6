using System.Runtime.InteropServices;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine;

/// <summary>
/// Every check of what a client sends, in one place: each fails with the field named and says what to do. The
/// command checks run before the engine looks the model up; <see cref="ReplyRows"/> and <see cref="PutDims"/> once
/// it knows the model's dims.
/// </summary>
internal static class RequestValidation
{
    /// <summary>Texts within the limits, and ids (when given) one per text.</summary>
    public static void Embed(EmbedCommand command, EngineOptions options)
    {
        Texts(command.Texts, options);
        if (command.Ids.Count != 0)
        {
            if (command.Ids.Count != command.Texts.Count)
            {
                CacheRequestException.ThrowInvalid("ids",
                    $"ids has {command.Ids.Count} entries but texts has {command.Texts.Count}; give one id per text, or none");
            }
            Ids(command.Ids, options);
        }
    }

    /// <summary>Ids or texts, not both, within the limits.</summary>
    public static void Get(GetCommand command, EngineOptions options)
    {
        if (command.Ids.Count != 0 && command.Texts.Count != 0)
        {
            CacheRequestException.ThrowInvalid("ids", "give either ids or texts, not both");
        }
        Ids(command.Ids, options);
        Texts(command.Texts, options);
    }

    /// <summary>Ids and/or texts one per row, dims within the limit, data of the stated shape: returns the rows as float32, all finite.</summary>
    public static float[] Put(PutCommand command, EngineOptions options)
    {
        if (command.Ids.Count == 0 && command.Texts.Count == 0)
        {
            CacheRequestException.ThrowInvalid("ids", "give ids and/or texts, one per vector row, to store the vectors under");
        }
        foreach (var (field, entries) in new[] { ("ids", command.Ids), ("texts", command.Texts) })
        {
            if (entries.Count != 0 && entries.Count != command.Count)
            {
                CacheRequestException.ThrowInvalid(field,
                    $"{field} has {entries.Count} entries but vectors.count is {command.Count}; give one per row");
            }
        }
        Ids(command.Ids, options);
        Texts(command.Texts, options);
        if (command.Dims < 1 || command.Dims > options.MaxDims)
        {
            CacheRequestException.ThrowInvalid("vectors.dims", $"vectors.dims is {command.Dims}; it must be between 1 and {options.MaxDims} ({EngineOptions.SettingName(nameof(EngineOptions.MaxDims))})");
        }
        long expectedBytes = (long)command.Count * command.Dims * command.DType.BytesPerElement();
        if (command.Data.Length != expectedBytes)
        {
            CacheRequestException.ThrowInvalid("vectors.data",
                $"vectors.data has {command.Data.Length} bytes but count {command.Count} x dims {command.Dims} x " +
                $"{command.DType.BytesPerElement()} bytes ({command.DType}) is {expectedBytes}");
        }
        return FiniteRows(command.Data.Span, command.Count, command.Dims, command.DType);
    }

    /// <summary>Put vectors as wide as the model's cache.</summary>
    public static void PutDims(string model, int cacheDims, int dims)
    {
        if (cacheDims != dims)
        {
            CacheRequestException.ThrowInvalid("vectors.dims", $"model '{model}' has {cacheDims} dims but the vectors have {dims}");
        }
    }

    /// <summary>Document ids and texts paired (when both come), top_k not negative, the pairs within the limit: returns the document count.</summary>
    public static int Score(ScoreCommand command, EngineOptions options)
    {
        if (command.DocumentIds.Count != 0 && command.DocumentTexts.Count != 0 && command.DocumentIds.Count != command.DocumentTexts.Count)
        {
            CacheRequestException.ThrowInvalid("document_ids",
                $"document_ids has {command.DocumentIds.Count} entries but document_texts has {command.DocumentTexts.Count}; give one id per text, or only one of them");
        }
        if (command.TopK < 0) CacheRequestException.ThrowInvalid("top_k", "top_k must not be negative");
        int documentCount = Math.Max(command.DocumentIds.Count, command.DocumentTexts.Count);
        long pairs = (long)command.Queries.Count * documentCount;
        if (pairs > options.MaxScoresPerRequest)
        {
            CacheRequestException.Throw(CacheErrorKind.ResourceExhausted,
                $"{command.Queries.Count} queries x {documentCount} documents is {pairs} scores; at most {options.MaxScoresPerRequest} are allowed per request: split the queries, or raise {EngineOptions.SettingName(nameof(EngineOptions.MaxScoresPerRequest))}");
        }
        return documentCount;
    }

    /// <summary>One candidate list per query, texts (when given) one per id, the pairs within the limit: returns how many pairs they hold.</summary>
    public static long Rerank(RerankCommand command, EngineOptions options)
    {
        if (command.Candidates.Count != command.Queries.Count)
        {
            CacheRequestException.ThrowInvalid("candidates",
                $"candidates has {command.Candidates.Count} entries but queries has {command.Queries.Count}; give one candidate list per query, in query order");
        }
        if (command.TopK < 0) CacheRequestException.ThrowInvalid("top_k", "top_k must not be negative");
        long pairs = 0;
        for (int q = 0; q < command.Candidates.Count; q++)
        {
            var candidates = command.Candidates[q];
            if (candidates.Texts.Count != 0 && candidates.Texts.Count != candidates.Ids.Count)
            {
                CacheRequestException.ThrowInvalid($"candidates[{q}].texts",
                    $"candidates[{q}] has {candidates.Ids.Count} ids but {candidates.Texts.Count} texts; give one text per id (empty for none), or no texts");
            }
            Ids(candidates.Ids, options);
            pairs += candidates.Ids.Count;
        }
        if (pairs > options.MaxScoresPerRequest)
        {
            CacheRequestException.Throw(CacheErrorKind.ResourceExhausted,
                $"the candidate lists hold {pairs} query x document pairs; at most {options.MaxScoresPerRequest} are allowed per request: split the queries, or raise {EngineOptions.SettingName(nameof(EngineOptions.MaxScoresPerRequest))}");
        }
        return pairs;
    }

    public static void RowLimit(int rows, string field, EngineOptions options)
    {
        if (rows > options.MaxRowsPerRequest)
        {
            CacheRequestException.Throw(CacheErrorKind.ResourceExhausted,
                $"{field} has {rows} entries; at most {options.MaxRowsPerRequest} are allowed per request: split it into smaller requests, " +
                $"or raise {EngineOptions.SettingName(nameof(EngineOptions.MaxRowsPerRequest))}");
        }
    }

    private static void Texts(IReadOnlyList<string> texts, EngineOptions options)
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

    private static void Ids(IReadOnlyList<string> ids, EngineOptions options)
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
    private static float[] FiniteRows(ReadOnlySpan<byte> data, int count, int dims, VectorDType dtype)
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
