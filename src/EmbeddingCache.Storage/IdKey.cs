using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using RandomNumberGenerator = System.Security.Cryptography.RandomNumberGenerator;
using System.Text;

namespace EmbeddingCache.Storage;

/// <summary>
/// The 16-byte key an id is indexed under: CBC-MAC with AES-128 over the id's UTF-8, prefixed by its length,
/// under a key drawn at random for each process. The id index is rebuilt from the sidecars on every open and
/// never written anywhere, so the key only has to be stable within one process. It is not SHA-256 because hashing
/// every id dominates the open of a large cache and a large Get by ids, and the CPU's AES instructions do the same
/// job in a small fraction of the time (benchmarks/results/lab-notes.md).
/// </summary>
/// <remarks>
/// Why crafted ids cannot collide: CBC-MAC over a prefix-free message set (the first block holds the length) is
/// a pseudo-random function under a secret key. Nobody outside the process knows the key and no key of an id
/// ever leaves it, so two distinct ids share an index key with probability 2^-128 whatever an attacker chooses,
/// which is what the truncated SHA-256 gave. Without AES instructions the id falls back to SHA-256 (the content
/// key of its text), as before.
/// </remarks>
internal static class IdKey
{
    // Ids up to this many UTF-8 bytes are encoded on the stack; longer ones rent a buffer.
    private const int StackUtf8Limit = 256;

    // The first block holds only the length, so its encryption is made once per length here, not once per id:
    // half the AES work of a typical id. Longer ids encrypt it as they come.
    private const int PrecomputedLengths = 256;

    private static readonly Vector128<byte>[] RoundKeys = Aes.IsSupported ? ExpandKey(RandomNumberGenerator.GetBytes(16)) : [];

    private static readonly Vector128<byte>[] LengthBlocks = Aes.IsSupported
        ? [.. Enumerable.Range(0, PrecomputedLengths).Select(length => Encrypt(LengthBlock(length)))]
        : [];

    /// <summary>The index key of <paramref name="id"/>.</summary>
    public static ContentKey FromId(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        if (Encoding.UTF8.GetMaxByteCount(id.Length) <= StackUtf8Limit)
        {
            Span<byte> utf8 = stackalloc byte[StackUtf8Limit];
            var length = Encoding.UTF8.GetBytes(id, utf8);
            return FromUtf8(utf8[..length]);
        }

        var rented = ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetByteCount(id));
        try
        {
            var length = Encoding.UTF8.GetBytes(id, rented);
            return FromUtf8(rented.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>The index key of an id given as UTF-8 (as the sidecar stores it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // millions of calls on open: skip tier-0
    public static ContentKey FromUtf8(ReadOnlySpan<byte> utf8)
    {
        if (!Aes.IsSupported)
        {
            return ContentKey.FromUtf8(utf8);
        }

        Vector128<byte> state = utf8.Length < PrecomputedLengths ? LengthBlocks[utf8.Length] : Encrypt(LengthBlock(utf8.Length));
        while (utf8.Length >= 16)
        {
            state = Encrypt(state ^ Vector128.Create(utf8[..16]));
            utf8 = utf8[16..];
        }

        if (!utf8.IsEmpty)
        {
            Span<byte> last = stackalloc byte[16];
            last.Clear();
            utf8.CopyTo(last);
            state = Encrypt(state ^ Vector128.Create((ReadOnlySpan<byte>)last));
        }

        Vector128<ulong> halves = state.AsUInt64();
        return new ContentKey(halves.GetElement(0), halves.GetElement(1));
    }

    /// <summary>The first block of an id's CBC-MAC: its UTF-8 length.</summary>
    internal static Vector128<byte> LengthBlock(int length) => Vector128.Create((ulong)length, 0UL).AsByte();

    /// <summary>AES-128 encryption of one block under the process key; exposed to test it against the platform's AES.</summary>
    internal static Vector128<byte> Encrypt(Vector128<byte> block) => Encrypt(block, RoundKeys);

    internal static Vector128<byte> Encrypt(Vector128<byte> block, Vector128<byte>[] roundKeys)
    {
        block ^= roundKeys[0];
        for (var round = 1; round < 10; round++)
        {
            block = Aes.Encrypt(block, roundKeys[round]);
        }

        return Aes.EncryptLast(block, roundKeys[10]);
    }

    /// <summary>The AES-128 key schedule (FIPS 197) with AESKEYGENASSIST; its round constant must be a literal.</summary>
    internal static Vector128<byte>[] ExpandKey(ReadOnlySpan<byte> key)
    {
        var keys = new Vector128<byte>[11];
        keys[0] = Vector128.Create(key);
        keys[1] = NextRoundKey(keys[0], Aes.KeygenAssist(keys[0], 0x01));
        keys[2] = NextRoundKey(keys[1], Aes.KeygenAssist(keys[1], 0x02));
        keys[3] = NextRoundKey(keys[2], Aes.KeygenAssist(keys[2], 0x04));
        keys[4] = NextRoundKey(keys[3], Aes.KeygenAssist(keys[3], 0x08));
        keys[5] = NextRoundKey(keys[4], Aes.KeygenAssist(keys[4], 0x10));
        keys[6] = NextRoundKey(keys[5], Aes.KeygenAssist(keys[5], 0x20));
        keys[7] = NextRoundKey(keys[6], Aes.KeygenAssist(keys[6], 0x40));
        keys[8] = NextRoundKey(keys[7], Aes.KeygenAssist(keys[7], 0x80));
        keys[9] = NextRoundKey(keys[8], Aes.KeygenAssist(keys[8], 0x1B));
        keys[10] = NextRoundKey(keys[9], Aes.KeygenAssist(keys[9], 0x36));
        return keys;
    }

    private static Vector128<byte> NextRoundKey(Vector128<byte> previous, Vector128<byte> assist)
    {
        Vector128<byte> word = Sse2.Shuffle(assist.AsInt32(), 0xFF).AsByte();
        previous ^= Sse2.ShiftLeftLogical128BitLane(previous, 4);
        previous ^= Sse2.ShiftLeftLogical128BitLane(previous, 4);
        previous ^= Sse2.ShiftLeftLogical128BitLane(previous, 4);
        return previous ^ word;
    }
}
