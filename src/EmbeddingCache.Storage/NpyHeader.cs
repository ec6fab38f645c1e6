using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace EmbeddingCache.Storage;

/// <summary>
/// The header of any numpy <c>.npy</c> file (format 1.0, 2.0 or 3.0), as <c>np.save</c> writes it: used to
/// import files researchers already have and to write exports numpy loads as they are.
/// </summary>
public sealed partial record NpyHeader(string Descr, bool FortranOrder, long[] Shape, int DataOffset)
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Rows of a 2-D array (the first dimension).</summary>
    public long Rows => Shape.Length > 0 ? Shape[0] : 0;

    /// <summary>Columns of a 2-D array.</summary>
    public int Columns => Shape.Length == 2 ? checked((int)Shape[1]) : 0;

    /// <summary>Bytes of one row of a 2-D float32 or float16 array.</summary>
    /// <exception cref="InvalidOperationException">The elements are not float32 or float16.</exception>
    public int RowBytes => VectorType is { } type
        ? Columns * type.BytesPerElement()
        : throw new InvalidOperationException($"'{Descr}' elements are not float32 or float16.");

    /// <summary>The storage dtype for '&lt;f4' and '&lt;f2' (and their '|'/'=' spellings on little-endian), otherwise null.</summary>
    public VectorDType? VectorType => Descr switch
    {
        "<f4" or "=f4" => VectorDType.Float32,
        "<f2" or "=f2" => VectorDType.Float16,
        _ => null,
    };

    /// <summary>Reads the header at the start of <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">Not a .npy file, or a header this parser cannot read; the message says which.</exception>
    public static NpyHeader Read(string path)
    {
        using var file = File.OpenRead(path);
        return Read(file, path);
    }

    /// <summary>Reads the header at the start of <paramref name="file"/>; <paramref name="path"/> names it in errors.</summary>
    /// <exception cref="InvalidDataException">Not a .npy file, or a header this parser cannot read; the message says which.</exception>
    public static NpyHeader Read(Stream file, string path)
    {
        var prefix = new byte[12];
        var read = file.ReadAtLeast(prefix, prefix.Length, throwOnEndOfStream: false);
        if (read < 10 || !prefix.AsSpan(0, 6).SequenceEqual(Magic))
        {
            throw new InvalidDataException($"{path} is not a .npy file (no \\x93NUMPY magic)");
        }
        int major = prefix[6];
        int headerLength;
        int lengthBytes;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(prefix.AsSpan(8));
            lengthBytes = 2;
        }
        else if (major is 2 or 3 && read >= 12)
        {
            headerLength = checked((int)BinaryPrimitives.ReadUInt32LittleEndian(prefix.AsSpan(8)));
            lengthBytes = 4;
        }
        else
        {
            throw new InvalidDataException($"{path}: .npy format version {major}.{prefix[7]} is not supported");
        }
        if (headerLength > 1 << 20) throw new InvalidDataException($"{path}: a .npy header of {headerLength} bytes is not plausible");
        var dataOffset = 8 + lengthBytes + headerLength;
        var header = new byte[headerLength];
        file.Position = 8 + lengthBytes;
        if (file.ReadAtLeast(header, headerLength, throwOnEndOfStream: false) < headerLength)
        {
            throw new InvalidDataException($"{path}: the file ends inside its .npy header");
        }
        return Parse(major == 3 ? Encoding.UTF8.GetString(header) : Encoding.Latin1.GetString(header), dataOffset, path);
    }

    /// <summary>A format 1.0 header for a C-order (rows, columns) array, padded to 64 bytes as numpy does.</summary>
    public static byte[] Format(VectorDType dtype, long rows, int columns)
    {
        var dict = string.Create(CultureInfo.InvariantCulture,
            $"{{'descr': '{dtype.NpyDescr()}', 'fortran_order': False, 'shape': ({rows}, {columns}), }}");
        var unpadded = 10 + dict.Length + 1;
        var total = (unpadded + 63) / 64 * 64;
        var bytes = new byte[total];
        Magic.CopyTo(bytes);
        bytes[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)(total - 10));
        Encoding.ASCII.GetBytes(dict, bytes.AsSpan(10));
        bytes.AsSpan(10 + dict.Length, total - 11 - dict.Length).Fill((byte)' ');
        bytes[^1] = (byte)'\n';
        return bytes;
    }

    private static NpyHeader Parse(string header, int dataOffset, string path)
    {
        var descr = DescrEntry().Match(header);
        var fortran = Fortran().Match(header);
        var shape = ShapeTuple().Match(header);
        if (!descr.Success || !fortran.Success || !shape.Success)
        {
            throw new InvalidDataException($"{path}: cannot read the .npy header {header.Trim()}");
        }
        var dims = shape.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(d => long.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n <= int.MaxValue ? n
                : throw new InvalidDataException($"{path}: shape ({shape.Groups[1].Value}) is not a tuple of sizes"))
            .ToArray();
        return new NpyHeader(descr.Groups[1].Value, fortran.Groups[1].Value == "True", dims, dataOffset);
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrEntry();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex Fortran();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeTuple();
}
