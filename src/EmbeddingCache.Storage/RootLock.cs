using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace EmbeddingCache.Storage;

/// <summary>
/// The single-writer lock of an artifacts root: an exclusive flock on <c>&lt;root&gt;/.lock</c>, held for the
/// life of the <see cref="ArtifactsRoot"/>, and <c>&lt;root&gt;/.lock.json</c> naming the holder. The kernel
/// drops the flock when the holder dies, so a killed server never blocks a restart.
/// </summary>
internal sealed class RootLock : IDisposable
{
    public const string LockFileName = ".lock";
    public const string HolderFileName = ".lock.json";

    private readonly FileStream _lockFile;
    private readonly string _holderPath;

    private RootLock(FileStream lockFile, string holderPath)
    {
        _lockFile = lockFile;
        _holderPath = holderPath;
    }

    public static RootLock Acquire(string root)
    {
        var lockPath = Path.Combine(root, LockFileName);
        var holderPath = Path.Combine(root, HolderFileName);
        FileStream stream;
        try
        {
            // FileShare.None is an exclusive flock on Unix (and a sharing lock on Windows).
            stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (Exception exception) when (DiskErrors.IsNotWritable(exception))
        {
            throw new IOException(
                $"The artifacts directory '{root}' cannot be written ({exception.Message}): it is on a read-only filesystem or " +
                "this user may not write there. Point --artifacts at a directory this process can write.", exception);
        }
        catch (IOException exception) when (exception is not (FileNotFoundException or DirectoryNotFoundException))
        {
            throw Locked(root, holderPath, exception);
        }

        bool locked;
        try
        {
            // Explicit as well, in case .NET's advisory locking is switched off by configuration.
            locked = NativeFile.TryLockExclusive(stream.SafeFileHandle);
        }
        catch
        {
            stream.Dispose();
            throw;
        }

        if (!locked)
        {
            stream.Dispose();
            throw Locked(root, holderPath, null);
        }

        try
        {
            WriteHolder(holderPath);
        }
        catch
        {
            stream.Dispose();
            throw;
        }

        return new RootLock(stream, holderPath);
    }

    public void Dispose()
    {
        try
        {
            File.Delete(_holderPath); // before unlocking, so a new holder's record is never deleted
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        _lockFile.Dispose();
    }

    private static void WriteHolder(string path)
    {
        using Process self = Process.GetCurrentProcess();
        var json = new JsonObject
        {
            ["pid"] = Environment.ProcessId,
            ["command_line"] = Environment.CommandLine,
            ["started_at"] = CacheManifest.FormatTime(self.StartTime.ToUniversalTime()),
            ["host"] = Environment.MachineName,
        };
        AtomicFile.Write(path, Encoding.UTF8.GetBytes(json.ToJsonString() + "\n"), sync: true);
    }

    private static ArtifactsLockedException Locked(string root, string holderPath, Exception? inner)
    {
        int? pid = null;
        string? commandLine = null;
        DateTimeOffset? startedAt = null;
        try
        {
            if (JsonNode.Parse(File.ReadAllBytes(holderPath)) is JsonObject holder)
            {
                pid = (int?)holder["pid"];
                commandLine = (string?)holder["command_line"];
                if (DateTimeOffset.TryParse((string?)holder["started_at"], CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var started))
                {
                    startedAt = started;
                }
            }
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or JsonException or InvalidOperationException or FormatException)
        {
            // The holder may not have written its record yet; the message says so.
        }

        var who = pid is null
            ? "a process that has not recorded itself in .lock.json"
            : $"pid {pid} ({commandLine ?? "command line unknown"}), started {(startedAt is { } s ? CacheManifest.FormatTime(s) : "at an unknown time")}";
        var message = $"The artifacts directory '{root}' is in use by another writer: {who}. Stop it, or point this one at another artifacts directory.";
        return inner is null
            ? new ArtifactsLockedException(message) { HolderProcessId = pid, HolderCommandLine = commandLine, HolderStartedAt = startedAt }
            : new ArtifactsLockedException(message, inner) { HolderProcessId = pid, HolderCommandLine = commandLine, HolderStartedAt = startedAt };
    }
}
