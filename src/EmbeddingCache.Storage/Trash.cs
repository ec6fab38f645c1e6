using System.Globalization;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Storage;

/// <summary>
/// Kind folders that invalidation renamed aside (<c>.trash-&lt;kind&gt;-&lt;generation&gt;-&lt;UTC ticks&gt;</c> in the model
/// folder), and the staging folders a new generation is built in (<c>.new-&lt;kind&gt;-&lt;generation&gt;</c>). The rename is
/// the atomic step; deleting a trash folder waits for <see cref="StorageOptions.InvalidatedRetentionSeconds"/> so that a
/// follower still reading the old generation gets no error, and is retried when the cache next opens. The time of
/// the rename is in the name, in UTC, so the wait survives a restart. One instance per <see cref="ArtifactsRoot"/>.
/// </summary>
internal sealed class Trash(TimeSpan retention, ILogger logger) : IDisposable
{
    private const string Prefix = ".trash-";
    private const string StagingPrefix = ".new-";

    private readonly CancellationTokenSource _stopping = new();

    /// <summary>A name no other trash folder of this model has; it records the generation and when it was renamed.</summary>
    public static string PathFor(string modelDirectory, string kindName, long generation) =>
        Path.Combine(modelDirectory, FormattableString.Invariant($"{Prefix}{kindName}-{generation}-{DateTime.UtcNow.Ticks}"));

    /// <summary>Where the empty folder of a new generation is built before it is renamed into place.</summary>
    public static string StagingPathFor(string modelDirectory, string kindName, long generation) =>
        Path.Combine(modelDirectory, FormattableString.Invariant($"{StagingPrefix}{kindName}-{generation}"));

    /// <summary>
    /// The highest generation a trash folder of <paramref name="kindName"/> records, 0 if none: after a crash between an
    /// invalidation's two renames the kind folder is gone, and the next generation must still be higher.
    /// </summary>
    public static long HighestTrashedGeneration(string modelDirectory, string kindName)
    {
        long highest = 0;
        if (!Directory.Exists(modelDirectory))
        {
            return highest;
        }

        foreach (var folder in Directory.EnumerateDirectories(modelDirectory, $"{Prefix}{kindName}-*"))
        {
            if (Parse(Path.GetFileName(folder)) is { } parsed && parsed.Kind == kindName)
            {
                highest = Math.Max(highest, parsed.Generation);
            }
        }

        return highest;
    }

    /// <summary>Deletes a trash folder once the retention has passed (at once when it is zero).</summary>
    public void DeleteLater(string path) => DeleteAfter(path, retention);

    /// <summary>
    /// On open: deletes leftover staging folders and the trash folders older than the retention, and schedules the
    /// deletion of the others.
    /// </summary>
    public void Sweep(string modelDirectory)
    {
        foreach (var staging in Directory.EnumerateDirectories(modelDirectory, StagingPrefix + "*"))
        {
            Delete(staging, logger); // an invalidation cut short before its new folder was renamed into place
        }

        foreach (var trash in Directory.EnumerateDirectories(modelDirectory, Prefix + "*"))
        {
            var renamedAt = Parse(Path.GetFileName(trash)) is { } parsed ? parsed.RenamedAt : DateTime.MinValue;
            DeleteAfter(trash, retention - (DateTime.UtcNow - renamedAt));
        }
    }

    /// <summary>Cancels the deletions still waiting; the next open deletes those folders.</summary>
    public void Dispose()
    {
        _stopping.Cancel();
        _stopping.Dispose();
    }

    private void DeleteAfter(string path, TimeSpan delay)
    {
        if (delay <= TimeSpan.Zero)
        {
            Delete(path, logger);
            return;
        }

        _ = Task.Delay(delay, _stopping.Token).ContinueWith(
            _ => Delete(path, logger), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
    }

    /// <summary>Deletes a folder; a failure is logged, never thrown.</summary>
    private static void Delete(string path, ILogger logger)
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

    private static (string Kind, long Generation, DateTime RenamedAt)? Parse(string name)
    {
        // .trash-<kind>-<generation>-<ticks>; kind names hold no '-'.
        var parts = name[Prefix.Length..].Split('-');
        if (parts.Length != 3
            || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var generation)
            || !long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var ticks))
        {
            return null;
        }

        return (parts[0], generation, ticks <= DateTime.MaxValue.Ticks ? new DateTime(ticks, DateTimeKind.Utc) : DateTime.MinValue);
    }
}
