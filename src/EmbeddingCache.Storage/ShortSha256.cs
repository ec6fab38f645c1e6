using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace EmbeddingCache.Storage;

/// <summary>
/// SHA-256 of short inputs (ids, short texts) computed in managed code. The platform's one-shot hash
/// (OpenSSL on Linux) has a fixed cost per call, whatever the length, that is larger than hashing one block
/// here, and it would dominate GatherByIds and the hashing of ids on open (benchmarks/results/lab-notes.md).
/// Longer inputs go to the platform, which uses the CPU's SHA instructions and wins from the second block on.
/// Tests check both agree byte for byte.
/// </summary>
internal static class ShortSha256
{
    /// <summary>Longest input hashed here: the message and its padding fit in one 64-byte block.</summary>
    public const int MaxLength = 55;

    private static ReadOnlySpan<uint> RoundConstants =>
    [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];

    /// <summary>The first 16 bytes of SHA-256(<paramref name="data"/>) as a key; <paramref name="data"/> is at most <see cref="MaxLength"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // hot on open and in GatherByIds: skip tier-0
    public static unsafe ContentKey Hash(ReadOnlySpan<byte> data)
    {
        if (data.Length > MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(data), data.Length, "Input too long for the short-message path.");
        }

        var state = stackalloc uint[8] { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
        var block = stackalloc byte[64];
        var padded = new Span<byte>(block, 64);
        padded.Clear();
        data.CopyTo(padded);
        block[data.Length] = 0x80;
        BinaryPrimitives.WriteUInt64BigEndian(padded[56..], (ulong)data.Length * 8);
        var schedule = stackalloc uint[64];
        fixed (uint* constants = RoundConstants)
        {
            Compress(state, block, schedule, constants);
        }

        return new ContentKey(((ulong)state[0] << 32) | state[1], ((ulong)state[2] << 32) | state[3]);
    }

    // Pointers, not spans: the 64 rounds are the whole cost, and bounds checks in them doubled it.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Compress(uint* state, byte* block, uint* w, uint* k)
    {
        for (var i = 0; i < 16; i++)
        {
            w[i] = BinaryPrimitives.ReverseEndianness(*(uint*)(block + (i * 4)));
        }

        for (var i = 16; i < 64; i++)
        {
            var s0 = BitOperations.RotateRight(w[i - 15], 7) ^ BitOperations.RotateRight(w[i - 15], 18) ^ (w[i - 15] >> 3);
            var s1 = BitOperations.RotateRight(w[i - 2], 17) ^ BitOperations.RotateRight(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }

        uint a = state[0], b = state[1], c = state[2], d = state[3], e = state[4], f = state[5], g = state[6], h = state[7];
        for (var i = 0; i < 64; i++)
        {
            var s1 = BitOperations.RotateRight(e, 6) ^ BitOperations.RotateRight(e, 11) ^ BitOperations.RotateRight(e, 25);
            var choice = (e & f) ^ (~e & g);
            var t1 = h + s1 + choice + k[i] + w[i];
            var s0 = BitOperations.RotateRight(a, 2) ^ BitOperations.RotateRight(a, 13) ^ BitOperations.RotateRight(a, 22);
            var majority = (a & b) ^ (a & c) ^ (b & c);
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + s0 + majority;
        }

        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
    }
}
