namespace EmbeddingCache.Storage;

/// <summary>
/// Replaces a small file so that readers and crash recovery see the old or the new content, never a mix:
/// write a temporary file, fsync it, rename it over the target, fsync the directory. Without
/// <c>sync</c> (durability mode None) the rename is still atomic against a crash of the process.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Suffix of files being written; recovery deletes leftovers.</summary>
    public const string TemporarySuffix = ".tmp";

    public static void Write(string path, ReadOnlySpan<byte> content, bool sync)
    {
        var directory = Path.GetDirectoryName(path) ?? ".";
        var temporary = path + TemporarySuffix;
        try
        {
            using (var handle = File.OpenHandle(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                RandomAccess.Write(handle, content, 0);
                if (sync)
                {
                    NativeFile.SyncData(handle, temporary);
                }
            }

            File.Move(temporary, path, overwrite: true);
            if (sync)
            {
                NativeFile.SyncDirectory(directory);
            }
        }
        catch (Exception exception)
        {
            try
            {
                File.Delete(temporary);
            }
            catch (IOException)
            {
            }

            throw DiskErrors.Classify(exception, $"writing {Path.GetFileName(path)}");
        }
    }
}
