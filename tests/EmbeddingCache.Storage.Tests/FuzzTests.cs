using System.Text;
using CsCheck;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>
/// Property-based fuzzing of every parser that reads bytes from disk: whatever the bytes, it answers or
/// refuses with its own error, never crashes, and never accepts a shape it cannot serve.
/// </summary>
public sealed class FuzzTests(ITestOutputHelper output)
{
    private const long Inputs = 20_000;

    /// <summary>Bytes that start like a .npy file often enough to reach the header parser's corners.</summary>
    private static readonly Gen<byte[]> NpyLike = Gen.OneOf(
        Gen.Byte.Array[0, 200],
        Gen.Select(Gen.Byte.Array[0, 160], Gen.Int[0, 40], (tail, cut) =>
        {
            byte[] valid = NpyHeader.Format(VectorDType.Float32, 3, 4);
            var mixed = valid.Concat(tail).ToArray();
            return mixed.AsSpan(0, Math.Max(0, mixed.Length - cut)).ToArray();
        }),
        Gen.Select(Gen.String[Gen.Char.AlphaNumeric, 0, 80], Gen.Byte[1, 3], (dict, major) =>
        {
            var header = Encoding.ASCII.GetBytes(dict);
            var bytes = new byte[10 + header.Length];
            new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', major, 0 }.CopyTo(bytes, 0);
            BitConverter.TryWriteBytes(bytes.AsSpan(8), (ushort)header.Length);
            header.CopyTo(bytes, 10);
            return bytes;
        }));

    [Fact]
    public void The_npy_header_parser_answers_or_refuses_any_bytes()
    {
        long accepted = 0;
        NpyLike.Sample(bytes =>
        {
            try
            {
                var header = NpyHeader.Read(new MemoryStream(bytes), "fuzz.npy");
                Assert.True(header.DataOffset >= 10);
                Assert.All(header.Shape, d => Assert.InRange(d, 0, int.MaxValue));
                Interlocked.Increment(ref accepted);
            }
            catch (InvalidDataException)
            {
                // Refused with a message: the expected answer for junk.
            }
        }, iter: Inputs);
        output.WriteLine($"{Inputs} inputs, {accepted} accepted as .npy headers");
        Assert.True(accepted > 0, "the generator should reach valid headers too");
    }

    [Fact]
    public void The_segment_header_reader_never_misreads_a_count()
    {
        var layout = new NpyLayout(4, VectorDType.Float32);
        var valid = new byte[layout.HeaderLength];
        layout.WriteHeader(valid, 7);
        Gen.Select(Gen.Int[0, valid.Length - 1], Gen.Byte, Gen.Bool).Sample((position, value, truncate) =>
        {
            var header = (byte[])valid.Clone();
            header[position] = value;
            var count = layout.TryReadCount(truncate ? header.AsSpan(0, position) : header);
            // Either refused, or a count that the bytes really say (a changed digit gives another honest count).
            Assert.True(count is null or >= 0);
            if (!truncate && header[position] == valid[position]) Assert.Equal(7, count);
        }, iter: Inputs);
        output.WriteLine($"{Inputs} mutated segment headers read");
    }

    [Fact]
    public void The_sidecar_reader_stops_cleanly_on_any_bytes()
    {
        Gen.Byte.Array[0, 300].Sample(bytes =>
        {
            var keys = new ContentKey?[16];
            var ids = new ContentKey?[16];
            var stop = KeySidecar.Read(bytes, 16, keys, ids, out int records, out long consumed);
            Assert.InRange(records, 0, 16);
            Assert.InRange(consumed, 0, bytes.Length);
            Assert.True(Enum.IsDefined(stop));
        }, iter: Inputs);
        output.WriteLine($"{Inputs} random sidecars read");
    }
}
