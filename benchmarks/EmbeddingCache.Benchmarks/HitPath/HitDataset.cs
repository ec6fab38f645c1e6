using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using EmbeddingCache.Benchmarks.Corpus;
using EmbeddingCache.Engine;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Benchmarks.HitPath;

/// <summary>
/// The data of the hit-path comparison, made from a fixed seed and kept in a scratch folder so that a rerun reuses
/// it: normalised random vectors as plain <c>.npy</c> files with one id a line (<c>doc-0000042</c>), the texts of
/// the Embed peer, and artifacts roots holding them. A root is only reused once marked complete, so an interrupted
/// build starts over.
/// </summary>
public sealed class HitDataset
{
    /// <summary>The model the vectors are stored under: a built-in one, so that Embed of cached texts works.</summary>
    public const string Model = BuiltInModels.MiniLM;

    /// <summary>Dimensions of all-MiniLM-L6-v2.</summary>
    public const int Dims = 384;

    /// <summary>How ids are written, as a Python format string (the client makes ids from row numbers with it).</summary>
    public const string PythonIdFormat = "doc-{:07d}";

    private const int RowBytes = Dims * sizeof(float);
    private const int PutRows = 4096;
    private const string CompleteMarker = "hitbench-complete.json";

    private readonly string _folder;
    private readonly int _seed;

    private HitDataset(string folder, int seed)
    {
        _folder = folder;
        _seed = seed;
    }

    /// <summary>The folder of one seed's data under <paramref name="workDirectory"/>.</summary>
    public static HitDataset In(string workDirectory, int seed)
    {
        var folder = Path.Combine(workDirectory, $"hitbench-seed{seed}");
        Directory.CreateDirectory(folder);
        return new HitDataset(folder, seed);
    }

    /// <summary>The id of dataset row <paramref name="row"/>.</summary>
    public static string IdOf(long row) => "doc-" + row.ToString("D7", CultureInfo.InvariantCulture);

    /// <summary>The plain .npy of rows [start, start + count), made on first use.</summary>
    public string Vectors(long start, int count)
    {
        var path = Path.Combine(_folder, $"vectors-{start}-{count}.npy");
        if (File.Exists(path))
        {
            return path;
        }

        var started = Stopwatch.GetTimestamp();
        var temporary = path + ".tmp";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            file.Write(NpyHeader(count));
            // One generator per part, seeded by seed and start: a part's rows never depend on how others were cut.
            var random = new Random(HashCode.Combine(_seed, start));
            var rows = new float[PutRows * Dims];
            for (var done = 0; done < count; done += PutRows)
            {
                var chunk = Math.Min(PutRows, count - done);
                for (var row = 0; row < chunk; row++)
                {
                    var vector = rows.AsSpan(row * Dims, Dims);
                    for (var i = 0; i < Dims; i++)
                    {
                        vector[i] = (float)(random.NextDouble() * 2 - 1);
                    }

                    TensorPrimitives.Divide(vector, TensorPrimitives.Norm(vector), vector);
                }

                file.Write(MemoryMarshal.AsBytes(rows.AsSpan(0, chunk * Dims)));
            }
        }

        File.WriteAllLines(path[..^4] + ".ids.txt", Enumerable.Range(0, count).Select(row => IdOf(start + row)));
        File.Move(temporary, path, overwrite: true);
        Console.WriteLine($"  made {Path.GetFileName(path)} ({count:N0} x {Dims}) in {Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s");
        return path;
    }

    /// <summary>The texts of the Embed peer: text i is stored with the vector of dataset row i.</summary>
    public string Texts(int count)
    {
        var path = Path.Combine(_folder, $"texts-{count}.json");
        if (!File.Exists(path))
        {
            var texts = SyntheticCorpus.Generate(count, _seed).Select(text => text.Text).ToArray();
            File.WriteAllText(path + ".tmp", JsonSerializer.Serialize(texts));
            File.Move(path + ".tmp", path, overwrite: true);
        }

        return path;
    }

    /// <summary>
    /// An artifacts root holding <paramref name="rows"/> vectors by id (imported from the plain .npy parts of
    /// <paramref name="partRows"/> rows each, as <c>embcache import</c> stores them) and, after them, the texts'
    /// vectors stored by text. Built on first use, reused afterwards.
    /// </summary>
    public async Task<string> RootAsync(long rows, int partRows, string textsPath, CancellationToken cancellationToken)
    {
        var root = Path.Combine(_folder, $"root-{rows}");
        var marker = Path.Combine(root, CompleteMarker);
        if (File.Exists(marker))
        {
            return root;
        }

        if (Directory.Exists(root))
        {
            Directory.Delete(root, recursive: true);
        }

        var started = Stopwatch.GetTimestamp();
        using var logging = LoggerFactory.Create(builder => builder.SetMinimumLevel(LogLevel.Warning));
        await using (var engine = EmbeddingCacheEngine.Open(new EngineOptions { ArtifactsDirectory = root, PreloadModels = [] }, logging))
        {
            for (long start = 0; start < rows; start += partRows)
            {
                var part = (int)Math.Min(partRows, rows - start);
                await ImportAsync(engine, Vectors(start, part), start, part, cancellationToken).ConfigureAwait(false);
            }

            var texts = JsonSerializer.Deserialize<string[]>(await File.ReadAllTextAsync(textsPath, cancellationToken).ConfigureAwait(false))!;
            await PutTextsAsync(engine, texts, Vectors(0, partRows), partRows, cancellationToken).ConfigureAwait(false);
        }

        await File.WriteAllTextAsync(marker, JsonSerializer.Serialize(new { rows, seed = _seed, texts = textsPath }), cancellationToken).ConfigureAwait(false);
        Console.WriteLine($"  built {root} ({rows:N0} rows) in {Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s");
        return root;
    }

    /// <summary>Reads every sidecar and .npy header of a root once, so that open time is measured on a warm page cache every time.</summary>
    public static void WarmMetadata(string root)
    {
        foreach (var sidecar in Directory.EnumerateFiles(root, "*.msgpack", SearchOption.AllDirectories))
        {
            File.ReadAllBytes(sidecar);
        }
    }

    private static async Task ImportAsync(EmbeddingCacheEngine engine, string npy, long start, int count, CancellationToken cancellationToken)
    {
        using var handle = File.OpenHandle(npy);
        var data = new byte[PutRows * RowBytes];
        var offset = NpyHeader(count).Length;
        for (var done = 0; done < count; done += PutRows)
        {
            var chunk = Math.Min(PutRows, count - done);
            RandomAccess.Read(handle, data.AsSpan(0, chunk * RowBytes), offset + (long)done * RowBytes);
            var ids = Enumerable.Range(done, chunk).Select(row => IdOf(start + row)).ToArray();
            await engine.PutAsync(
                new PutCommand(Model, VectorKind.Document, ids, [], chunk, Dims, VectorDType.Float32, data.AsMemory(0, chunk * RowBytes)),
                cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task PutTextsAsync(EmbeddingCacheEngine engine, string[] texts, string npy, int npyRows, CancellationToken cancellationToken)
    {
        using var handle = File.OpenHandle(npy);
        var data = new byte[PutRows * RowBytes];
        var offset = NpyHeader(npyRows).Length;
        for (var done = 0; done < texts.Length; done += PutRows)
        {
            var chunk = Math.Min(PutRows, texts.Length - done);
            RandomAccess.Read(handle, data.AsSpan(0, chunk * RowBytes), offset + (long)done * RowBytes);
            await engine.PutAsync(
                new PutCommand(Model, VectorKind.Document, [], texts[done..(done + chunk)], chunk, Dims, VectorDType.Float32, data.AsMemory(0, chunk * RowBytes)),
                cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>A numpy format 1.0 header for a C-order (rows, 384) '&lt;f4' array, padded to 64 bytes as numpy pads it.</summary>
    private static byte[] NpyHeader(long rows)
    {
        var dictionary = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {Dims}), }}";
        var length = 10 + dictionary.Length + 1;
        var padded = (length + 63) / 64 * 64;
        var header = new byte[padded];
        header[0] = 0x93;
        "NUMPY"u8.CopyTo(header.AsSpan(1));
        header[6] = 1;
        header[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(8), (ushort)(padded - 10));
        Encoding.ASCII.GetBytes(dictionary).CopyTo(header, 10);
        header.AsSpan(10 + dictionary.Length, padded - length).Fill((byte)' ');
        header[^1] = (byte)'\n';
        return header;
    }
}
