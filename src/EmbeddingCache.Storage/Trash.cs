using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Storage;

/// <summary>
/// Kind folders that invalidation renamed aside (<c>.trash-&lt;kind&gt;-&lt;generation&gt;-&lt;ticks&gt;</c> in the model
/// folder): the rename is the atomic step, deleting them is cleanup that may fail or be cut short by a crash and is
/// retried when the cache next opens.
/// </summary>
internal static class Trash
{
    private const string Prefix = ".trash-";

    /// <summary>A name no other trash folder of this model has.</summary>
    public static string PathFor(string modelDirectory, string kindName, long generation) =>
        Path.Combine(modelDirectory, $"{Prefix}{kindName}-{generation}-{Environment.TickCount64}");

    /// <summary>Deletes a trash folder; a failure is logged, never thrown.</summary>
    public static void Delete(string path, ILogger logger)
    {
        if (!Directory.Exists(path))
        {
            return;
        }

        try
        {
            Directory.Delete(path, recursive: true);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            StorageLog.TrashNotDeleted(logger, exception, path);
        }
    }

    /// <summary>Deletes the trash folders an earlier process left in <paramref name="modelDirectory"/>.</summary>
    public static void DeleteLeftovers(string modelDirectory, ILogger logger)
    {
        foreach (var trash in Directory.EnumerateDirectories(modelDirectory, Prefix + "*"))
        {
            Delete(trash, logger);
        }
    }
}
