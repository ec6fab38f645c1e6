using System.Diagnostics;

namespace EmbeddingCache.Testing;

/// <summary>
/// A real small filesystem (tmpfs with a size limit) for full-disk and read-only tests, shared by the storage and
/// functional tests: mounting needs root, as
/// on CI; without it the test fails saying so rather than passing without testing anything.
/// </summary>
public sealed class SmallFilesystem : IDisposable
{
    public SmallFilesystem(string sizeOption)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "embcache-small-fs-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
        (int exitCode, string error) = Run("mount", "-t", "tmpfs", "-o", $"size={sizeOption}", "tmpfs", Path);
        if (exitCode != 0)
        {
            Directory.Delete(Path);
            Assert.Fail($"This test mounts a {sizeOption} tmpfs and needs root for it (CI runs as root): {error}");
        }
    }

    public string Path { get; }

    /// <summary>Writes <paramref name="file"/> until the filesystem has no space left; deleting it frees the space again.</summary>
    public void Fill(string file)
    {
        byte[] block = new byte[4096];
        Random.Shared.NextBytes(block);
        using var stream = new FileStream(file, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.None);
        try
        {
            while (true) stream.Write(block);
        }
        catch (IOException)
        {
            // Full.
        }
    }

    /// <summary>Remounts read-only (or back to read-write): root's writes are refused too, unlike with chmod.</summary>
    public void Remount(bool readOnly)
    {
        (int exitCode, string error) = Run("mount", "-o", readOnly ? "remount,ro" : "remount,rw", Path);
        Assert.True(exitCode == 0, $"remount {(readOnly ? "ro" : "rw")} failed: {error}");
    }

    public void Dispose()
    {
        Run("umount", "-l", Path);
        Directory.Delete(Path);
    }

    private static (int ExitCode, string Error) Run(string command, params string[] arguments)
    {
        var start = new ProcessStartInfo(command) { RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        try
        {
            using var process = Process.Start(start)!;
            string error = process.StandardError.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, error);
        }
        catch (System.ComponentModel.Win32Exception exception)
        {
            return (-1, exception.Message);
        }
    }
}
