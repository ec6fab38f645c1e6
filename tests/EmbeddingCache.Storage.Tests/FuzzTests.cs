using System.Globalization;
using System.Text;
using System.Text.Json;
using CsCheck;
using EmbeddingCache.Fuzzing;
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
        // Half the mutations land in the row-count field, half of those with a byte a count could hold.
        var positions = Gen.OneOf(Gen.Int[0, valid.Length - 1], Gen.Int[layout.CountOffset, layout.CountOffset + NpyLayout.CountWidth - 1]);
        var values = Gen.OneOf(Gen.Byte, Gen.OneOf(" +-0123456789"u8.ToArray()));
        long otherCounts = 0;
        Gen.Select(positions, values, Gen.Bool).Sample((position, value, truncate) =>
        {
            var header = (byte[])valid.Clone();
            header[position] = value;
            var read = truncate ? header.AsSpan(0, position) : header;
            var count = layout.TryReadCount(read);
            // Either refused, or a count that the bytes really say (a changed digit gives another honest count).
            Assert.Equal(CountTheBytesSay(read, valid, layout.CountOffset), count);
            if (!truncate && header[position] == valid[position]) Assert.Equal(7, count);
            if (count is not (null or 7)) Interlocked.Increment(ref otherCounts);
        }, iter: Inputs);
        output.WriteLine($"{Inputs} mutated segment headers read, {otherCounts} read as another honest count");
        Assert.True(otherCounts > 0, "the generator should reach changed digits too");
    }

    /// <summary>
    /// What numpy would read as the row count: nothing unless every byte outside the count field is the header this
    /// layout writes and the field is spaces, then a non-negative decimal number (a leading sign is Python's too).
    /// </summary>
    private static int? CountTheBytesSay(ReadOnlySpan<byte> header, byte[] valid, int countOffset)
    {
        var fieldEnd = countOffset + NpyLayout.CountWidth;
        if (header.Length < valid.Length
            || !header[..countOffset].SequenceEqual(valid.AsSpan(0, countOffset))
            || !header[fieldEnd..valid.Length].SequenceEqual(valid.AsSpan(fieldEnd)))
        {
            return null;
        }

        var field = Encoding.Latin1.GetString(header[countOffset..fieldEnd]).TrimStart(' ');
        return int.TryParse(field, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int rows) && rows >= 0 ? rows : null;
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

    /// <summary>
    /// A cache manifest field by field: each of the keys the store reads is missing, right, out of range or of
    /// another type, among members the store does not know and nesting beyond the parser's limit.
    /// </summary>
    private static readonly Gen<(JsonFuzz.Field[] Fields, (string Json, bool Readable) Extra)> CacheManifests = Gen.Select(
        Gen.Select(
            JsonFuzz.Integer("format_version", CacheManifest.FormatVersion, CacheManifest.FormatVersion, required: true),
            JsonFuzz.Integer("dims", 1, CacheDescriptor.MaxDims, required: true),
            Gen.Frequency(
                (4, Gen.OneOf("\"<f4\"", "\"<f2\"").Select(d => new JsonFuzz.Field("dtype", d, true))),
                (1, Gen.Const(new JsonFuzz.Field("dtype", null, false))),
                (2, Gen.OneOf("\">f4\"", "\"<f8\"", "\"float32\"", "\"\"", "4", "null", "[\"<f4\"]").Select(d => new JsonFuzz.Field("dtype", d, false)))),
            Gen.Frequency(
                (4, Gen.String[Gen.Char.AlphaNumeric, 0, 64].Select(f => new JsonFuzz.Field("fingerprint", JsonFuzz.Quote(f), true))),
                (1, Gen.OneOf(JsonFuzz.OddScalar.Where(s => !s.StartsWith('"')), Gen.Const("\"\\ud800\"")).Select(f => new JsonFuzz.Field("fingerprint", f, false)))),
            JsonFuzz.OptionalBool("store_only")),
        Gen.Select(JsonFuzz.OptionalString("base_model"), JsonFuzz.OptionalString("huggingface_url"), JsonFuzz.OptionalString("created_at")),
        JsonFuzz.ExtraMembers,
        (required, described, extra) => (new[] { required.Item1, required.Item2, required.Item3, required.Item4, required.Item5, described.Item1, described.Item2, described.Item3 }, extra));

    [Fact]
    public void The_cache_manifest_reader_accepts_exactly_the_manifests_it_can_serve()
    {
        using var directory = new TestArtifacts();
        long accepted = 0;
        CacheManifests.Sample((fields, extra) =>
        {
            string path = WriteUnique(directory.Root, JsonFuzz.Object(fields, extra.Json));
            var manifest = CacheManifest.TryRead(path, "m", out string? problem);
            string written = File.ReadAllText(path);
            File.Delete(path);
            // The informational keys (base_model, huggingface_url, created_at) never decide; a bad one reads as unset.
            bool acceptable = extra.Readable && fields.Where(f => f.Key is not ("base_model" or "huggingface_url" or "created_at")).All(f => f.Acceptable);
            Assert.True(acceptable == (manifest is not null), $"{(manifest is null ? "refused" : "accepted")} ({problem}): {written}");
            if (manifest is null)
            {
                Assert.False(string.IsNullOrWhiteSpace(problem));
                return;
            }
            Interlocked.Increment(ref accepted);
            Assert.Null(problem);
            Assert.Equal(Expected<int>(fields, "dims"), manifest.Dims);
            Assert.Equal(Expected<string>(fields, "dtype"), manifest.DType.NpyDescr());
            Assert.Equal(Expected<string>(fields, "fingerprint"), manifest.Fingerprint);
            Assert.Equal(Expected<bool?>(fields, "store_only") ?? false, manifest.StoreOnly);
            Assert.Equal(Expected<string?>(fields, "base_model"), manifest.BaseModel);
            Assert.Equal(Expected<string?>(fields, "huggingface_url"), manifest.HuggingFaceUrl);
        }, iter: Inputs);
        output.WriteLine($"{Inputs} generated cache manifests, {accepted} accepted, each exactly when every key it needs is right");
        Assert.True(accepted > 0);
    }

    [Fact]
    public void The_cache_manifest_reader_refuses_or_reads_any_bytes()
    {
        using var directory = new TestArtifacts();
        var anyText = Gen.OneOf(
            Gen.Byte.Array[0, 200],
            JsonFuzz.TokenSoup.Select(Encoding.UTF8.GetBytes),
            JsonFuzz.AnyValue.Select(Encoding.UTF8.GetBytes),
            JsonFuzz.Nesting.Select(n => Encoding.UTF8.GetBytes($"{{\"format_version\":1,\"dims\":{n.Json}}}")));
        anyText.Sample(bytes =>
        {
            string path = WriteUnique(directory.Root, bytes);
            var manifest = CacheManifest.TryRead(path, "m", out string? problem);
            File.Delete(path);
            Assert.True(manifest is null != (problem is null), "either a manifest or a problem");
            if (manifest is not null) Assert.InRange(manifest.Dims, 1, CacheDescriptor.MaxDims);
        }, iter: Inputs);
        output.WriteLine($"{Inputs} arbitrary cache manifest files read");
    }

    private static T Expected<T>(JsonFuzz.Field[] fields, string key)
    {
        var field = fields.Single(f => f.Key == key);
        return field is { Json: { } json, Acceptable: true } ? JsonSerializer.Deserialize<T>(json)! : default!;
    }

    private static string WriteUnique(string directory, string json) => WriteUnique(directory, Encoding.UTF8.GetBytes(json));

    private static string WriteUnique(string directory, byte[] content)
    {
        string path = Path.Combine(directory, Guid.NewGuid().ToString("N") + ".json");
        File.WriteAllBytes(path, content);
        return path;
    }
}
