using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
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
    /// Reads up to <paramref name="limit"/> records. For each, the key (if any) and the <see cref="IdKey"/> of the id
    /// (if any) go to the arrays; ids are hashed from their UTF-8 bytes without making strings. Parsed by hand
    /// rather than with MessagePackReader: only this one record shape is valid, and opening a large cache
    /// reads millions of them.
    /// </summary>
    /// <returns>How reading stopped; <paramref name="records"/> and <paramref name="consumedBytes"/> cover the complete records.</returns>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // runs on open over millions of records: skip tier-0
    public static Stop Read(
        ReadOnlySpan<byte> content,
        int limit,
        Span<ContentKey?> keys,
        Span<ContentKey?> idKeys,
        out int records,
        out long consumedBytes)
    {
        records = 0;
        int position = 0;
        Stop stop = Stop.Limit;
        while (records < limit)
        {
            ReadOnlySpan<byte> rest = content[position..];
            stop = ReadRecord(rest, out ContentKey? key, out int idStart, out int idLength, out int length);
            if (stop != Stop.Limit)
            {
                break;
            }

            keys[records] = key;
            idKeys[records] = idLength < 0 ? null : IdKey.FromUtf8(rest.Slice(idStart, idLength));
            records++;
            position += length;
        }

        consumedBytes = position;
        return stop;
    }

    /// <summary>
    /// Reads up to <paramref name="limit"/> records as they are stored, ids as strings: for readers that show the
    /// rows (export, verify) rather than index them.
    /// </summary>
    /// <returns>How reading stopped; <paramref name="records"/> holds the complete records read, <paramref name="consumedBytes"/> their length.</returns>
    public static Stop Read(ReadOnlySpan<byte> content, int limit, List<SidecarRecord> records, out long consumedBytes)
    {
        int position = 0;
        Stop stop = Stop.Limit;
        while (records.Count < limit)
        {
            ReadOnlySpan<byte> rest = content[position..];
            stop = ReadRecord(rest, out ContentKey? key, out int idStart, out int idLength, out int length);
            if (stop != Stop.Limit)
            {
                break;
            }

            records.Add(new SidecarRecord(key, idLength < 0 ? null : Encoding.UTF8.GetString(rest.Slice(idStart, idLength))));
            position += length;
        }

        consumedBytes = position;
        return stop;
    }

    /// <summary>One record at the start of <paramref name="record"/>; its id's UTF-8 is at idStart (idLength -1: no id).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Stop ReadRecord(ReadOnlySpan<byte> record, out ContentKey? key, out int idStart, out int idLength, out int length)
    {
        key = null;
        idStart = 0;
        idLength = -1;
        length = 0;
        if (record.Length < 3)
        {
            return record.IsEmpty || record[0] == FixArray2 ? Stop.EndOfFile : Stop.Invalid;
        }

        if (record[0] != FixArray2)
        {
            return Stop.Invalid;
        }

        int position = 1;
        if (record[position] == Nil)
        {
            position++;
        }
        else if (record[position] == Bin8)
        {
            if (record[position + 1] != ContentKey.Size)
            {
                return Stop.Invalid;
            }

            if (record.Length < position + 2 + ContentKey.Size + 1)
            {
                return Stop.EndOfFile;
            }

            key = ContentKey.ReadFrom(record.Slice(position + 2, ContentKey.Size));
            position += 2 + ContentKey.Size;
        }
        else
        {
            return Stop.Invalid;
        }

        byte code = record[position];
        int stringLength;
        int headerLength;
        if (code == Nil)
        {
            length = position + 1;
            return key is null ? Stop.Invalid : Stop.Limit; // this store never writes a row that cannot be found
        }
        else if ((code & 0xE0) == FixStr)
        {
            stringLength = code & 0x1F;
            headerLength = 1;
        }
        else if (code is Str8 or Str16 or Str32)
        {
            headerLength = code == Str8 ? 2 : code == Str16 ? 3 : 5;
            if (record.Length < position + headerLength)
            {
                return Stop.EndOfFile;
            }

            ReadOnlySpan<byte> size = record.Slice(position + 1, headerLength - 1);
            long declared = code == Str8 ? size[0] : code == Str16 ? BinaryPrimitives.ReadUInt16BigEndian(size) : BinaryPrimitives.ReadUInt32BigEndian(size);
            if (declared > MaxIdBytes)
            {
                return Stop.Invalid;
            }

            stringLength = (int)declared;
        }
        else
        {
            return Stop.Invalid;
        }

        int stringStart = position + headerLength;
        if (record.Length < stringStart + stringLength)
        {
            return Stop.EndOfFile;
        }

        idStart = stringStart;
        idLength = stringLength;
        length = stringStart + stringLength;
        return Stop.Limit;
    }

    private const byte FixArray2 = 0x92;
    private const byte Nil = 0xC0;
    private const byte Bin8 = 0xC4;
    private const byte FixStr = 0xA0;
    private const byte Str8 = 0xD9;
    private const byte Str16 = 0xDA;
    private const byte Str32 = 0xDB;

    // Ids beyond this are treated as corruption rather than read (a damaged length must not run off).
    private const int MaxIdBytes = 1 << 20;
}
