using System.Buffers.Text;
using System.Text;

namespace EmbeddingCache.Storage;

/// <summary>
/// The .npy header this store writes: format 1.0, C order, shape <c>(rows, dims)</c>, padded with spaces to
/// a multiple of 64 bytes and ending in a newline. The row count is a fixed-width, space-padded 8-digit
/// field placed in one 8-byte-aligned word of the file, so it is rewritten in place with a single 8-byte
/// write and a concurrent numpy reader never sees a torn number (numpy accepts spaces inside the tuple).
/// </summary>
internal sealed class NpyLayout
{
    /// <summary>Width of the row-count field; also the word size it is aligned to.</summary>
    public const int CountWidth = 8;

    private const int PreambleLength = 10; // magic (6) + version (2) + header length (2)
    private const int Alignment = 64;
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    private readonly byte[] _template;

    public NpyLayout(int dims, VectorDType dtype)
    {
        Dims = dims;
        DType = dtype;
        ElementSize = dtype.BytesPerElement();
        RowBytes = dims * ElementSize;

        var prefix = $"{{'descr': '{dtype.NpyDescr()}', 'fortran_order': False, 'shape': (";
        var countOffset = PreambleLength + prefix.Length;
        var pad = (CountWidth - (countOffset % CountWidth)) % CountWidth;
        CountOffset = countOffset + pad;
        var suffix = $", {dims}), }}";
        var unpadded = CountOffset + CountWidth + suffix.Length + 1; // + final newline
        HeaderLength = (unpadded + Alignment - 1) / Alignment * Alignment;

        var text = new StringBuilder(HeaderLength - PreambleLength)
            .Append(prefix)
            .Append(' ', pad)
            .Append(' ', CountWidth)
            .Append(suffix);
        text.Append(' ', HeaderLength - PreambleLength - text.Length - 1).Append('\n');

        _template = new byte[HeaderLength];
        Magic.CopyTo(_template);
        _template[6] = 1;
        _template[7] = 0;
        _template[8] = (byte)((HeaderLength - PreambleLength) & 0xFF);
        _template[9] = (byte)((HeaderLength - PreambleLength) >> 8);
        Encoding.Latin1.GetBytes(text.ToString(), _template.AsSpan(PreambleLength));
    }

    public int Dims { get; }

    public VectorDType DType { get; }

    public int ElementSize { get; }

    public int RowBytes { get; }

    /// <summary>Bytes before the first row; a multiple of 64.</summary>
    public int HeaderLength { get; }

    /// <summary>File offset of the row-count field; a multiple of 8.</summary>
    public int CountOffset { get; }

    public static VectorDType? ParseDescr(string? descr) => descr switch
    {
        "<f4" => VectorDType.Float32,
        "<f2" => VectorDType.Float16,
        _ => null,
    };

    public long FileLength(long rows) => HeaderLength + (rows * RowBytes);

    /// <summary>Writes the full header for <paramref name="rows"/> rows.</summary>
    public void WriteHeader(Span<byte> destination, int rows)
    {
        _template.CopyTo(destination);
        FormatCount(destination.Slice(CountOffset, CountWidth), rows);
    }

    /// <summary>Formats the 8-byte row-count word, right-aligned and space-padded.</summary>
    public static void FormatCount(Span<byte> word, int rows)
    {
        if ((uint)rows > StorageOptions.MaxSegmentRows)
        {
            throw new ArgumentOutOfRangeException(nameof(rows), rows, "A segment holds at most 99,999,999 rows.");
        }

        Span<byte> digits = stackalloc byte[CountWidth];
        Utf8Formatter.TryFormat(rows, digits, out var written);
        word[..(CountWidth - written)].Fill((byte)' ');
        digits[..written].CopyTo(word[(CountWidth - written)..]);
    }

    /// <summary>
    /// Reads the row count from a header this layout wrote. Returns null when the header is anything else
    /// (another writer's file, wrong dtype or dims, damaged bytes): such a file is quarantined, not guessed at.
    /// </summary>
    public int? TryReadCount(ReadOnlySpan<byte> header)
    {
        if (header.Length < HeaderLength)
        {
            return null;
        }

        if (!header[..CountOffset].SequenceEqual(_template.AsSpan(0, CountOffset))
            || !header[(CountOffset + CountWidth)..HeaderLength].SequenceEqual(_template.AsSpan(CountOffset + CountWidth)))
        {
            return null;
        }

        ReadOnlySpan<byte> word = header.Slice(CountOffset, CountWidth).TrimStart((byte)' ');
        if (word.IsEmpty || !Utf8Parser.TryParse(word, out int rows, out var consumed) || consumed != word.Length || rows < 0)
        {
            return null;
        }

        return rows;
    }

    /// <summary>Best-effort description of a header for a quarantine log line.</summary>
    public static string Describe(ReadOnlySpan<byte> header)
    {
        if (header.Length < PreambleLength || !header[..6].SequenceEqual(Magic))
        {
            return "not a .npy file";
        }

        var length = header[8] | (header[9] << 8);
        var available = Math.Min(length, header.Length - PreambleLength);
        return $"header {Encoding.Latin1.GetString(header.Slice(PreambleLength, available)).Trim()}";
    }
}
