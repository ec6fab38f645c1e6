using System.Runtime.Intrinsics;
using PaddingMode = System.Security.Cryptography.PaddingMode;
using System.Text;

namespace EmbeddingCache.Storage.Tests;

/// <summary>The keyed hash the id index uses in place of SHA-256.</summary>
public sealed class IdKeyTests
{
    [Fact]
    public void The_block_cipher_is_AES_128_as_the_platform_computes_it()
    {
        Assert.True(System.Runtime.Intrinsics.X86.Aes.IsSupported, "this machine has AES instructions; the id index relies on them for speed");
        var random = new Random(7);
        for (int trial = 0; trial < 100; trial++)
        {
            byte[] key = new byte[16], block = new byte[16];
            random.NextBytes(key);
            random.NextBytes(block);
            using var platform = System.Security.Cryptography.Aes.Create();
            platform.Key = key;
            byte[] expected = platform.EncryptEcb(block, PaddingMode.None);

            byte[] actual = new byte[16];
            IdKey.Encrypt(Vector128.Create(block), IdKey.ExpandKey(key)).CopyTo(actual);
            Assert.Equal(expected, actual);
        }
    }

    [Fact]
    public void An_id_has_one_key_from_text_and_from_utf8_and_distinct_ids_have_distinct_keys()
    {
        string[] ids = ["", "a", "a\0", "\0a", "doc-1", "doc-10", new string('x', 15), new string('x', 16), new string('x', 17),
            new string('x', 32), new string('x', 33), "é", "文档-42", "🙂", new string('y', 300)];
        var seen = new HashSet<ContentKey>();
        foreach (string id in ids)
        {
            ContentKey key = IdKey.FromId(id);
            Assert.Equal(key, IdKey.FromUtf8(Encoding.UTF8.GetBytes(id)));
            Assert.True(seen.Add(key), $"'{id}' collides");
        }

        // The same keys as CBC-MAC computed block by block, on both sides of the precomputed length blocks.
        foreach (int length in new[] { 0, 1, 12, 16, 255, 256, 257, 300 })
        {
            byte[] utf8 = Encoding.UTF8.GetBytes(new string('z', length));
            Vector128<byte> state = IdKey.Encrypt(IdKey.LengthBlock(length));
            for (int offset = 0; offset < length; offset += 16)
            {
                byte[] block = new byte[16];
                utf8.AsSpan(offset, Math.Min(16, length - offset)).CopyTo(block);
                state = IdKey.Encrypt(state ^ Vector128.Create(block));
            }

            Assert.Equal(new ContentKey(state.AsUInt64().GetElement(0), state.AsUInt64().GetElement(1)), IdKey.FromUtf8(utf8));
        }

        // A zero-padded final block must not make "x" and "x\0" (or any two lengths) equal.
        for (int n = 0; n < 100_000; n++)
        {
            Assert.True(seen.Add(IdKey.FromId("r" + n.ToString(System.Globalization.CultureInfo.InvariantCulture))));
        }
    }
}
