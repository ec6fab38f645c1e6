using System.Globalization;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Storage;

/// <summary>
/// Moves files the store cannot trust (corrupt, foreign, unreadable) into <c>quarantine/&lt;model&gt;/</c> under the
/// artifacts root instead of deleting them: the user's data stays for a person to inspect, it is never served,
/// and every <c>.npy</c> left under <c>embeddings/</c> still loads in numpy (invariant N1).
/// </summary>
internal static class Quarantine
{
    public const string FolderName = "quarantine";

    /// <summary>Moves <paramref name="path"/> (file or folder) aside and logs QuarantinedFile.</summary>
    public static void Move(string modelDirectory, string model, string area, string path, string reason, ILogger logger)
    {
        // modelDirectory is <root>/embeddings/<model>.
        var root = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetFullPath(modelDirectory)))!;
        var folder = Path.Combine(root, FolderName, model);
        Directory.CreateDirectory(folder);
        var name = Path.GetFileName(path);
        var destination = Path.Combine(folder, $"{area}-{name}");
        for (var attempt = 1; File.Exists(destination) || Directory.Exists(destination); attempt++)
        {
            destination = Path.Combine(folder, $"{area}-{name}.{attempt.ToString(CultureInfo.InvariantCulture)}");
        }

        if (Directory.Exists(path))
        {
            Directory.Move(path, destination);
        }
        else
        {
            File.Move(path, destination);
        }

        NativeFile.SyncDirectory(folder);
        StorageLog.QuarantinedFile(logger, model, area, name, Path.GetRelativePath(root, destination), reason);
    }
}
