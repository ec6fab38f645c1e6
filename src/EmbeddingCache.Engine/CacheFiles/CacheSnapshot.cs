using System.Security.Cryptography;
using System.Text;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine.CacheFiles;

/// <summary>What a snapshot wrote: where, the committed rows of each kind, its files and bytes, and the fingerprint.</summary>
public sealed record SnapshotResult(string Directory, string ModelDirectory, long QueryRows, long DocumentRows, int Files, long Bytes, string Fingerprint);

/// <summary>
/// <c>snapshot</c>: a consistent copy of one model's cache laid out as an artifacts root
/// (<c>DIR/embeddings/MODEL/...</c> with a <c>SHA256SUMS</c> for <c>sha256sum -c</c>), so it is served as it is, or
/// uploaded as it is and checked after download. It reads the files through <see cref="KindFolderReader"/> without the
/// root lock, so it runs next to a live writer: each kind is the committed prefix the reader saw when it opened, and a
/// copy during which a kind was invalidated (or the model replaced) is thrown away, never kept mixing generations.
/// </summary>
public static class CacheSnapshot
{
    /// <summary>The checksum file, in the model folder of the copy; its paths are relative to that folder.</summary>
    public const string ChecksumFileName = "SHA256SUMS";

    private const int Attempts = 2;

    // The cache manifest and the kind manifests share the name, one per folder.
    private const string ManifestFileName = "manifest.json";

    private static readonly VectorKind[] Kinds = [VectorKind.Query, VectorKind.Document];

    /// <summary>Writes the snapshot of <paramref name="model"/>'s cache under <paramref name="artifactsRoot"/> to <paramref name="outputDirectory"/>.</summary>
    /// <exception cref="ArgumentException">The model name cannot be one.</exception>
    /// <exception cref="DirectoryNotFoundException">The model has no cache under the root.</exception>
    /// <exception cref="InvalidDataException">The cache manifest cannot be read, or a segment cannot be trusted (what verify reports).</exception>
    /// <exception cref="IOException">The output folder exists and is not empty, or cannot be written.</exception>
    /// <exception cref="InvalidOperationException">The cache was invalidated during every attempt.</exception>
    public static SnapshotResult Write(string artifactsRoot, string model, string outputDirectory)
    {
        if (ModelName.Problem(model) is { } problem) throw new ArgumentException(problem);

        string output = Path.GetFullPath(outputDirectory);
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
        {
            throw new IOException($"{output} exists and is not empty: a snapshot never writes over files");
        }

        string parent = Path.GetDirectoryName(output) ?? throw new IOException($"{output} has no parent folder to write beside");
        Directory.CreateDirectory(parent);
        // Beside the destination (same file system, so the final rename is one step) and never taken for a snapshot.
        string temporary = Path.Combine(parent, $".{Path.GetFileName(output)}.snapshot-{Environment.ProcessId}.tmp");
        try
        {
            for (int attempt = 1; attempt <= Attempts; attempt++)
            {
                if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
                if (TryCopy(artifactsRoot, model, temporary) is { } copied)
                {
                    if (Directory.Exists(output)) Directory.Delete(output); // empty, checked above
                    Directory.Move(temporary, output);
                    return copied with { Directory = output, ModelDirectory = Path.Combine(output, ArtifactsRoot.EmbeddingsFolderName, model) };
                }
            }
            throw new InvalidOperationException(
                $"the cache of '{model}' was invalidated (or its model replaced) during each of {Attempts} attempts, so no consistent copy was made; " +
                "run the snapshot again when it is quiet");
        }
        finally
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        }
    }

    /// <summary>One attempt; null when the cache changed generation while it was copied (the partial copy is then discarded by the caller).</summary>
    private static SnapshotResult? TryCopy(string artifactsRoot, string model, string root)
    {
        string modelDirectory = Path.Combine(root, ArtifactsRoot.EmbeddingsFolderName, model);
        var readers = new List<KindFolderReader>();
        try
        {
            foreach (var kind in Kinds) readers.Add(KindFolderReader.Open(artifactsRoot, model, kind));
            var files = new List<string>();
            long segmentBytes = 0;
            foreach (var reader in readers)
            {
                string kindDirectory = Path.Combine(modelDirectory, reader.Kind.Name());
                Directory.CreateDirectory(kindDirectory);
                foreach (var segment in reader.Segments)
                {
                    string npy = Path.Combine(kindDirectory, Path.GetFileName(segment.NpyPath));
                    string sidecar = Path.Combine(kindDirectory, Path.GetFileName(segment.SidecarPath));
                    segmentBytes += reader.CopyCommitted(segment, npy, sidecar);
                    files.Add(npy);
                    files.Add(sidecar);
                }
                string kindManifest = Path.Combine(kindDirectory, ManifestFileName);
                reader.WriteCopyManifest(kindManifest);
                files.Add(kindManifest);
            }

            // Checked after every byte is copied: a reader still current then read one generation throughout.
            if (readers.Any(reader => !reader.IsUnchanged()) || readers[0].Fingerprint != readers[1].Fingerprint) return null;
            if (readers.SelectMany(reader => reader.Problems.Select(p => $"{reader.Kind.Name()}/{p}")).ToList() is { Count: > 0 } problems)
            {
                throw new InvalidDataException($"the cache of '{model}' has files that cannot be trusted, so no snapshot was made " +
                                               $"(embcache verify {model} says more): {string.Join("; ", problems)}");
            }

            long queryRows = readers[0].RowCount, documentRows = readers[1].RowCount;
            string manifest = Path.Combine(modelDirectory, ManifestFileName);
            readers[0].WriteSnapshotManifest(manifest, queryRows, documentRows, segmentBytes, DateTimeOffset.UtcNow);
            files.Add(manifest);
            files.Add(WriteChecksums(modelDirectory, files));
            long bytes = files.Sum(file => new FileInfo(file).Length);
            return new SnapshotResult(root, modelDirectory, queryRows, documentRows, files.Count, bytes, readers[0].Fingerprint);
        }
        finally
        {
            foreach (var reader in readers) reader.Dispose();
        }
    }

    /// <summary>Writes <see cref="ChecksumFileName"/> as <c>sha256sum</c> prints it (hash, two spaces, path); returns its path.</summary>
    private static string WriteChecksums(string modelDirectory, IEnumerable<string> files)
    {
        var lines = new StringBuilder();
        foreach (var relative in files.Select(file => Path.GetRelativePath(modelDirectory, file)).Order(StringComparer.Ordinal))
        {
            using var stream = File.OpenRead(Path.Combine(modelDirectory, relative));
            lines.Append(Convert.ToHexStringLower(SHA256.HashData(stream))).Append("  ").Append(relative.Replace('\\', '/')).Append('\n');
        }
        string path = Path.Combine(modelDirectory, ChecksumFileName);
        using var checksums = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        checksums.Write(Encoding.UTF8.GetBytes(lines.ToString()));
        checksums.Flush(flushToDisk: true);
        return path;
    }
}
