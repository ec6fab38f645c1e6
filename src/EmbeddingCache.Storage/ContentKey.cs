using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace EmbeddingCache.Storage;

/// <summary>
/// Identifies a cached vector by what was fed to the tokenizer: the first 16 bytes of SHA-256 over the
/// UTF-8 of the exact input (prefix included). A cryptographic hash, so nobody can craft two texts that
/// collide and poison a shared cache. <see cref="High"/> holds bytes 0-7 and <see cref="Low"/> bytes 8-15,
/// both big-endian, so <see cref="ToString"/> prints the hash prefix as <c>sha256sum</c> would.
/// </summary>
public readonly record struct ContentKey(ulong High, ulong Low)
{
    /// <summary>Size of a key on disk and on the wire.</summary>
    public const int Size = 16;

    // Strings up to this many UTF-8 bytes are hashed from the stack; longer ones rent a buffer.
    private const int StackUtf8Limit = 512;

    /// <summary>Computes the key of <paramref name="text"/> (SHA-256 of its UTF-8, first 16 bytes).</summary>
    public static ContentKey FromText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var maxBytes = Encoding.UTF8.GetMaxByteCount(text.Length);
        if (maxBytes <= StackUtf8Limit)
        {
            Span<byte> utf8 = stackalloc byte[StackUtf8Limit];
            var length = Encoding.UTF8.GetBytes(text, utf8);
            return FromUtf8(utf8[..length]);
        }

        var rented = ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetByteCount(text));
        try
        {
            var length = Encoding.UTF8.GetBytes(text, rented);
            return FromUtf8(rented.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Computes the key of text already encoded as UTF-8.</summary>
    public static ContentKey FromUtf8(ReadOnlySpan<byte> utf8)
    {
        if (utf8.Length <= ShortSha256.MaxLength)
        {
            return ShortSha256.Hash(utf8);
        }

        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(utf8, hash);
        return ReadFrom(hash);
    }

    /// <summary>Writes the 16 key bytes in hash order.</summary>
    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, High);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Low);
    }

    /// <summary>Reads 16 key bytes in hash order.</summary>
    public static ContentKey ReadFrom(ReadOnlySpan<byte> source) =>
        new(BinaryPrimitives.ReadUInt64BigEndian(source), BinaryPrimitives.ReadUInt64BigEndian(source[8..]));

    /// <summary>Equality on both halves; written out so dictionary lookups stay a couple of compares.</summary>
    public bool Equals(ContentKey other) => High == other.High && Low == other.Low;

    /// <summary>The key is already uniformly random, so a slice of it is a perfect hash code.</summary>
    public override int GetHashCode() => (int)Low ^ (int)(Low >> 32);

    /// <summary>32 lowercase hex characters.</summary>
    public override string ToString()
    {
        Span<byte> bytes = stackalloc byte[Size];
        WriteTo(bytes);
        return Convert.ToHexStringLower(bytes);
    }
}
