using System.Text.Json;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine.CacheFiles;

/// <summary>What an export wrote, and the segments it had to leave out.</summary>
public sealed record ExportResult(long Rows, int Dims, string Descr, string NpyPath, string IdsPath, IReadOnlyList<string> Problems);

/// <summary>
/// Writes the rows a server would serve of one kind of a model's cache as one contiguous <c>.npy</c> (numpy loads it
/// as it is) plus a JSON array of their ids beside it. Reads the files without the root lock, so it runs next to a
/// live server.
/// </summary>
public static class CacheExport
{
    /// <summary>Where the ids of the export <paramref name="npyPath"/> go: <c>&lt;name&gt;.ids.json</c> beside it.</summary>
    public static string IdsPathOf(string npyPath) => Path.ChangeExtension(npyPath, null) + ".ids.json";

    /// <summary>Exports the live rows of <paramref name="kind"/> of <paramref name="model"/> to <paramref name="npyPath"/>, replacing it in one rename.</summary>
    /// <exception cref="DirectoryNotFoundException">The model has no cache under the root.</exception>
    /// <exception cref="InvalidDataException">The cache manifest cannot be read.</exception>
    public static ExportResult Write(string artifactsRoot, string model, VectorKind kind, string npyPath)
    {
        using var reader = KindFolderReader.Open(artifactsRoot, model, kind);
        var rows = reader.LiveRows();
        string temporary = npyPath + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write))
        {
            stream.Write(NpyHeader.Format(reader.DType, rows.Count, reader.Dims));
            var buffer = new byte[reader.RowBytes];
            foreach (var row in rows)
            {
                reader.ReadVector(row, buffer);
                stream.Write(buffer);
            }
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, npyPath, overwrite: true);
        string idsPath = IdsPathOf(npyPath);
        File.WriteAllText(idsPath, JsonSerializer.Serialize(rows.Select(r => r.Id).ToArray()));
        return new ExportResult(rows.Count, reader.Dims, reader.Descr, npyPath, idsPath, reader.Problems);
    }
}
