using System.CommandLine;
using EmbeddingCache.Engine.CacheFiles;

namespace EmbeddingCache.Server.Cli;

/// <summary>
/// <c>snapshot</c>: a consistent copy of one model's cache, laid out as an artifacts root with checksums, to serve, ship
/// or upload as it is. The work is <see cref="CacheSnapshot"/>; this verb parses the command line and prints. It reads
/// the files directly, so it runs next to a live server.
/// </summary>
internal static class SnapshotVerb
{
    public static Command Create()
    {
        var model = CliOptions.Model("The model whose cache is copied.");
        var output = new Option<DirectoryInfo>("--out", "-o")
        {
            Description = "The folder to create (it must not exist, or be empty); it becomes an artifacts root holding embeddings/MODEL.",
            Required = true,
        };
        var root = CliOptions.ArtifactsRoot();
        var command = new Command("snapshot", "Write a consistent copy of a model's cache (committed rows, manifests, SHA256SUMS) that a server serves as its root.")
        {
            model, output, root,
        };
        command.SetAction(parse =>
        {
            SnapshotResult snapshot;
            try
            {
                snapshot = CacheSnapshot.Write(parse.GetValue(root)!, parse.GetValue(model)!, parse.GetValue(output)!.FullName);
            }
            catch (Exception e) when (e is ArgumentException or IOException or InvalidDataException or InvalidOperationException or UnauthorizedAccessException)
            {
                return CliOptions.Fail(e.Message);
            }
            Console.WriteLine($"snapshot of {parse.GetValue(model)} written to {snapshot.Directory}: {snapshot.QueryRows:N0} query rows, " +
                              $"{snapshot.DocumentRows:N0} document rows, {snapshot.Files} files, {snapshot.Bytes:N0} bytes, " +
                              $"fingerprint {(snapshot.Fingerprint.Length == 0 ? "\"\" (store-only)" : snapshot.Fingerprint)}");
            Console.WriteLine($"check it with: cd {snapshot.ModelDirectory} && sha256sum -c {CacheSnapshot.ChecksumFileName}");
            return 0;
        });
        return command;
    }
}
