using System.Text.Json;
using EmbeddingCache.Storage;
using Microsoft.Win32.SafeHandles;

namespace EmbeddingCache.Engine.CacheFiles;

/// <summary>
/// An existing <c>.npy</c> of vectors (as <c>np.save</c> writes it) and its ids, checked and stored byte for byte in
/// chunks of Puts, through whichever writer the caller has: the engine on a root it holds, or a server's Put RPC.
/// </summary>
public sealed class NpyImport : IDisposable
{
    /// <summary>Rows per Put: about 6 MB of 384-dim float32, far below message limits.</summary>
    public const int ChunkRows = 4096;

    private readonly SafeFileHandle npy;
    private readonly NpyHeader header;
    private readonly string[] ids;

    private NpyImport(SafeFileHandle npy, NpyHeader header, VectorDType dtype, string[] ids)
    {
        this.npy = npy;
        this.header = header;
        this.ids = ids;
        DType = dtype;
    }

    /// <summary>Rows in the file.</summary>
    public long Rows => header.Rows;

    /// <summary>Floats per row.</summary>
    public int Dims => header.Columns;

    /// <summary>Element type of the rows.</summary>
    public VectorDType DType { get; }

    /// <summary>numpy's name of the element type, as the file spells it.</summary>
    public string Descr => header.Descr;

    /// <summary>Opens <paramref name="npyPath"/> and reads <paramref name="idsPath"/>, refusing anything that cannot be imported as it is.</summary>
    /// <exception cref="InvalidDataException">Not a C-order 2-D float32 or float16 array, or not one id per row; the message says which.</exception>
    /// <exception cref="IOException">A file cannot be read.</exception>
    /// <exception cref="JsonException">The ids file starts like a JSON array but is not one.</exception>
    public static NpyImport Open(string npyPath, string idsPath)
    {
        var header = NpyHeader.Read(npyPath);
        var ids = ReadIds(idsPath);
        string name = Path.GetFileName(npyPath);
        if (header.VectorType is not { } dtype || header.Shape.Length != 2 || header.FortranOrder)
        {
            throw new InvalidDataException($"{name} holds {header.Descr} with shape ({string.Join(", ", header.Shape)}): import takes a C-order " +
                                           "(rows, dims) float32 or float16 array, e.g. np.save(path, vectors.astype('<f4'))");
        }
        if (ids.Length != header.Rows)
        {
            throw new InvalidDataException($"{name} has {header.Rows} rows but the ids file has {ids.Length} ids");
        }
        return new NpyImport(File.OpenHandle(npyPath), header, dtype, ids);
    }

    /// <summary>Reads ids, one per row: a JSON array of strings, or a text file with one id a line.</summary>
    public static string[] ReadIds(string path)
    {
        string content = File.ReadAllText(path);
        return content.TrimStart().StartsWith('[')
            ? JsonSerializer.Deserialize<string[]>(content) ?? []
            : content.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => line.TrimEnd('\r')).ToArray();
    }

    /// <summary>Stores every row under its id in <paramref name="kind"/> of <paramref name="model"/>, one <paramref name="put"/> per chunk, in file order.</summary>
    /// <returns>Rows stored, as the puts count them.</returns>
    public async Task<long> StoreAsync(string model, VectorKind kind, Func<PutCommand, CancellationToken, Task<int>> put, CancellationToken cancellationToken)
    {
        int rowBytes = header.RowBytes;
        long stored = 0;
        for (long start = 0; start < Rows; start += ChunkRows)
        {
            int count = (int)Math.Min(ChunkRows, Rows - start);
            var data = new byte[count * rowBytes];
            RandomAccess.Read(npy, data, header.DataOffset + start * rowBytes);
            stored += await put(new PutCommand(model, kind, ids[(int)start..((int)start + count)], [], count, Dims, DType, data), cancellationToken)
                .ConfigureAwait(false);
        }
        return stored;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => npy.Dispose();
}
