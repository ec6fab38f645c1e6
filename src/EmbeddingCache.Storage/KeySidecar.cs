using System.Buffers;
using MessagePack;

namespace EmbeddingCache.Storage;

/// <summary>
/// The sidecar of a segment (<c>NNNNNN.keys.msgpack</c>): one MessagePack record per row, in row order,
/// each a 2-element array <c>[key: bin 16 | nil, id: str | nil]</c>. Python reads it with
/// <c>for key, id in msgpack.Unpacker(f, raw=False)</c>.
/// </summary>
internal static class KeySidecar
{
    /// <summary>File name suffix, after the 6-digit segment number.</summary>
    public const string Suffix = ".keys.msgpack";

    /// <summary>Appends one record to <paramref name="writer"/>.</summary>
    public static void WriteRecord(ref MessagePackWriter writer, ContentKey? key, string? id)
    {
        writer.WriteArrayHeader(2);
        if (key is { } k)
        {
            writer.WriteBinHeader(ContentKey.Size);
            k.WriteTo(writer.GetSpan(ContentKey.Size));
            writer.Advance(ContentKey.Size);
        }
        else
        {
            writer.WriteNil();
        }

        if (id is null)
        {
            writer.WriteNil();
        }
        else
        {
            writer.Write(id);
        }
    }

    /// <summary>How reading a sidecar ended.</summary>
    public enum Stop
    {
        /// <summary>Read as many records as asked for.</summary>
        Limit,

        /// <summary>The file ended, possibly inside a record (a torn tail).</summary>
        EndOfFile,

        /// <summary>Bytes that are not a record of this format.</summary>
        Invalid,
    }

    /// <summary>
    /// Reads up to <paramref name="limit"/> records. For each, the key (if any) and the SHA-256 key of the id
    /// (if any) go to the arrays; ids are hashed from their UTF-8 bytes without making strings.
    /// </summary>
    /// <returns>How reading stopped; <paramref name="records"/> and <paramref name="consumedBytes"/> cover the complete records.</returns>
    public static Stop Read(
        ReadOnlyMemory<byte> content,
        int limit,
        Span<ContentKey?> keys,
        Span<ContentKey?> idKeys,
        out int records,
        out long consumedBytes)
    {
        var reader = new MessagePackReader(content);
        records = 0;
        consumedBytes = 0;
        byte[]? idBuffer = null;
        Span<byte> keyBuffer = stackalloc byte[ContentKey.Size];
        try
        {
            while (records < limit)
            {
                if (reader.End)
                {
                    return Stop.EndOfFile;
                }

                if (!reader.TryReadArrayHeader(out int count))
                {
                    return Stop.EndOfFile;
                }

                if (count != 2)
                {
                    return Stop.Invalid;
                }

                ContentKey? key = null;
                if (!reader.TryReadNil())
                {
                    if (reader.NextMessagePackType != MessagePackType.Binary)
                    {
                        return Stop.Invalid;
                    }

                    ReadOnlySequence<byte>? bytes = reader.ReadBytes();
                    if (bytes is not { Length: ContentKey.Size } keyBytes)
                    {
                        return Stop.Invalid;
                    }

                    keyBytes.CopyTo(keyBuffer);
                    key = ContentKey.ReadFrom(keyBuffer);
                }

                ContentKey? idKey = null;
                if (!reader.TryReadNil())
                {
                    if (reader.NextMessagePackType != MessagePackType.String)
                    {
                        return Stop.Invalid;
                    }

                    ReadOnlySequence<byte>? utf8 = reader.ReadStringSequence();
                    if (utf8 is not { } idBytes)
                    {
                        return Stop.Invalid;
                    }

                    if (idBytes.IsSingleSegment)
                    {
                        idKey = ContentKey.FromUtf8(idBytes.FirstSpan);
                    }
                    else
                    {
                        int length = checked((int)idBytes.Length);
                        if (idBuffer is null || idBuffer.Length < length)
                        {
                            idBuffer = new byte[Math.Max(length, 256)];
                        }

                        idBytes.CopyTo(idBuffer);
                        idKey = ContentKey.FromUtf8(idBuffer.AsSpan(0, length));
                    }
                }

                if (key is null && idKey is null)
                {
                    return Stop.Invalid; // this store never writes a row that cannot be found
                }

                keys[records] = key;
                idKeys[records] = idKey;
                records++;
                consumedBytes = reader.Consumed;
            }

            return Stop.Limit;
        }
        catch (EndOfStreamException)
        {
            return Stop.EndOfFile;
        }
        catch (MessagePackSerializationException)
        {
            return Stop.Invalid;
        }
    }
}
