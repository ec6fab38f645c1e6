using System.Diagnostics;
using Xunit.Abstractions;

namespace EmbeddingCache.Storage.Tests;

public sealed class RootLockTests(ITestOutputHelper output) : IDisposable
{
    private readonly TestArtifacts _artifacts = new(output);

    public void Dispose() => _artifacts.Dispose();

    [Fact]
    public void A_second_open_fails_naming_the_holder_until_the_first_is_disposed()
    {
        ArtifactsRoot first = _artifacts.Open();
        var holder = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_artifacts.Root, ".lock.json")))!;
        Assert.Equal(Environment.ProcessId, (int?)holder["pid"]);

        var locked = Assert.Throws<ArtifactsLockedException>(() => _artifacts.Open());
        Assert.Contains($"pid {Environment.ProcessId}", locked.Message);
        Assert.Equal(Environment.ProcessId, locked.HolderProcessId);
        Assert.NotNull(locked.HolderStartedAt);

        first.Dispose();
        Assert.False(File.Exists(Path.Combine(_artifacts.Root, ".lock.json")));
        using ArtifactsRoot second = _artifacts.Open();
    }

    [Fact]
    public async Task A_lock_held_by_another_process_blocks_and_one_left_by_a_killed_process_does_not()
    {
        // Another process takes the same flock, as a second server would, and is then killed.
        var start = NumpyReader.StartInfo();
        start.ArgumentList.Clear();
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("import fcntl,sys,time\nf=open(sys.argv[1],'a')\nfcntl.flock(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(600)");
        start.ArgumentList.Add(Path.Combine(_artifacts.Root, ".lock"));
        start.RedirectStandardInput = true;
        using var holder = Process.Start(start)!;
        try
        {
            Assert.Equal("locked", await holder.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)));
            var locked = Assert.Throws<ArtifactsLockedException>(() => _artifacts.Open());
            Assert.Contains("another writer", locked.Message);
        }
        finally
        {
            holder.Kill();
            await holder.WaitForExitAsync();
        }

        using ArtifactsRoot root = _artifacts.Open();
        var lockFile = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_artifacts.Root, ".lock.json")))!;
        Assert.Equal(Environment.ProcessId, (int?)lockFile["pid"]);
    }
}
