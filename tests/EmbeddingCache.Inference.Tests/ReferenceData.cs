using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace EmbeddingCache.Inference.Tests;

/// <summary>The reference texts, token ids and vectors in tests/data/reference, made independently of this code.</summary>
public static partial class ReferenceData
{
    public const string Query = "query";
    public const string Document = "document";

    private static readonly byte[] NpyMagic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    public static string Directory { get; } = Path.Combine(RepositoryRoot, "tests", "data", "reference");

    public static IReadOnlyList<ReferenceText> Texts { get; } = LoadTexts();

    /// <summary>Token ids fed to the model for (model, kind), one list per text, in texts.json order.</summary>
    public static IReadOnlyList<ReferenceTokens> Tokens(string model, string kind)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Directory, "tokens.json")));
        return document.RootElement.GetProperty(model).GetProperty(kind).EnumerateArray()
            .Select(entry => new ReferenceTokens(
                entry.GetProperty("id").GetString()!,
                entry.GetProperty("ids").EnumerateArray().Select(id => id.GetInt64()).ToArray(),
                entry.GetProperty("truncated").GetBoolean()))
            .ToArray();
    }

    /// <summary>The reference vectors for (model, kind) as (rows, dims) float32.</summary>
    public static (float[] Data, int Rows, int Dims) Vectors(string model, string kind) => ReadNpy(Path.Combine(Directory, $"{model}.{kind}.npy"));

    /// <summary>A minimal reader for little-endian float32, C-order, 2-D .npy files (format 1.0 to 3.0).</summary>
    public static (float[] Data, int Rows, int Dims) ReadNpy(string path)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.True(bytes.AsSpan(0, 6).SequenceEqual(NpyMagic), $"{path} is not a .npy file");
        var major = bytes[6];
        var headerLength = major == 1 ? BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8)) : (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
        var headerStart = major == 1 ? 10 : 12;
        var header = Encoding.Latin1.GetString(bytes, headerStart, headerLength);
        Assert.Contains("'descr': '<f4'", header);
        Assert.Contains("'fortran_order': False", header);
        var shape = ShapePattern().Match(header);
        Assert.True(shape.Success, $"no 2-D shape in {header}");
        var rows = int.Parse(shape.Groups[1].Value);
        var dims = int.Parse(shape.Groups[2].Value);
        var data = new float[rows * dims];
        var body = bytes.AsSpan(headerStart + headerLength);
        Assert.True(body.Length >= data.Length * 4, $"{path} is truncated");
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = BinaryPrimitives.ReadSingleLittleEndian(body.Slice(i * 4));
        }

        return (data, rows, dims);
    }

    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }

        return dot / Math.Sqrt(na * nb);
    }

    private static IReadOnlyList<ReferenceText> LoadTexts()
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Directory, "texts.json")));
        return document.RootElement.EnumerateArray()
            .Select(entry => new ReferenceText(entry.GetProperty("id").GetString()!, entry.GetProperty("category").GetString()!, entry.GetProperty("text").GetString()!))
            .ToArray();
    }

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "EmbeddingCache.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"No EmbeddingCache.sln above {AppContext.BaseDirectory}.");
    }

    [GeneratedRegex(@"'shape': \(\s*(\d+)\s*,\s*(\d+)\s*,?\s*\)")]
    private static partial Regex ShapePattern();
}

public sealed record ReferenceText(string Id, string Category, string Text);

public sealed record ReferenceTokens(string Id, long[] Ids, bool Truncated);
