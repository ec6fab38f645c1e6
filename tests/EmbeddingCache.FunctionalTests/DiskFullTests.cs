using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Testing;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Grpc.Health.V1;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// Invariant N3 for a full disk, through the real server: the artifacts root on a 4 MiB tmpfs is filled by Puts
/// until they fail with RESOURCE_EXHAUSTED; reads go on byte for byte, nothing acknowledged is lost (across
/// restarts too), and writes resume once space is freed.
/// </summary>
public sealed class DiskFullTests(ITestOutputHelper output) : ServerTest(output)
{
    private const string Model = "full-disk";
    private const int Dims = 256; // 1 KiB a row
    private const int RowsPerPut = 32;

    [Fact]
    public async Task A_full_disk_refuses_writes_keeps_serving_loses_nothing_and_writes_resume_once_space_is_freed()
    {
        using var disk = new SmallFilesystem("4m");
        string artifacts = Path.Combine(disk.Path, "artifacts");
        Directory.CreateDirectory(artifacts);
        // The built-in model's 90 MB stay on the ordinary disk: the cache is what fills the small one.
        Directory.CreateSymbolicLink(Path.Combine(artifacts, "models"), Directory.CreateDirectory(Path.Combine(Artifacts.Path, "models")).FullName);
        string filler = Path.Combine(disk.Path, "filler");
        await File.WriteAllBytesAsync(filler, new byte[1 << 20]);
        string[] args = ["--EmbeddingCache:Storage:SegmentRows=256"];
        var acknowledged = new Dictionary<string, byte[]>();
        var random = new Random(21);
        int batch = 0;

        var server = await StartServerOnAsync(artifacts, args);
        RpcException? refused = null;
        while (refused is null)
        {
            Assert.True(batch < 200, "4 MiB should be full long before 200 Puts of 32 KiB");
            refused = await TryPutAsync(server, batch++, random, acknowledged);
        }
        Output.WriteLine($"full after {acknowledged.Count} acknowledged rows: {refused.Status.Detail}");
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.Contains("disk", refused.Status.Detail, StringComparison.OrdinalIgnoreCase);
        Assert.True(acknowledged.Count >= 1024, $"only {acknowledged.Count} rows fitted before the disk was full");
        Assert.Equal(StatusCode.ResourceExhausted, (await TryPutAsync(server, batch++, random, acknowledged))?.StatusCode);
        var newModel = await Assert.ThrowsAsync<RpcException>(() => server.Client.PutAsync(new PutRequest
        {
            Model = "another-model",
            Kind = Kind.Document,
            Ids = { "x" },
            Vectors = Wire.Pack(Wire.RandomRows(random, 1, Dims), Dims),
        }).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, newModel.StatusCode);
        await AssertServedAsync(server, acknowledged);
        await AssertServingAsync(server);

        // A restart on the still-full disk: everything acknowledged is there, writes are still refused cleanly.
        await server.StopAsync();
        server = await StartServerOnAsync(artifacts, args);
        await AssertServedAsync(server, acknowledged);
        Assert.Equal(StatusCode.ResourceExhausted, (await TryPutAsync(server, batch++, random, acknowledged))?.StatusCode);

        File.Delete(filler);
        for (int i = 0; i < 8; i++) Assert.Null(await TryPutAsync(server, batch++, random, acknowledged));
        await AssertServedAsync(server, acknowledged);
        Assert.DoesNotContain(server.ErrorLines(), line => !line.Contains("[1009] StorageFull: ", StringComparison.Ordinal));

        await server.StopAsync();
        server = await StartServerOnAsync(artifacts, args);
        await AssertServedAsync(server, acknowledged);
        await AssertServingAsync(server);
        await server.StopAsync();
        await Python.RunAsync("read_cache_files.py", artifacts);
    }

    [Fact]
    public async Task A_read_only_artifacts_root_stops_the_start_with_a_message_that_says_so()
    {
        using var disk = new SmallFilesystem("1m");
        string artifacts = Path.Combine(disk.Path, "artifacts");
        Directory.CreateDirectory(artifacts);
        disk.Remount(readOnly: true);

        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => StartServerOnAsync(artifacts));

        Output.WriteLine(failure.Message);
        Assert.Contains("cannot be written", failure.Message, StringComparison.Ordinal);
        Assert.Contains("read-only", failure.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("in use by another writer", failure.Message, StringComparison.Ordinal);
        Assert.Contains("exited with code 1 ", failure.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", failure.Message, StringComparison.Ordinal);
    }

    /// <summary>One Put of fresh ids; null when acknowledged (and recorded), else the refusal.</summary>
    private static async Task<RpcException?> TryPutAsync(ServerProcess server, int batch, Random random, Dictionary<string, byte[]> acknowledged)
    {
        var ids = Enumerable.Range(0, RowsPerPut).Select(i => $"b{batch}-{i}").ToArray();
        var vectors = Wire.Pack(Wire.RandomRows(random, RowsPerPut, Dims), Dims);
        try
        {
            await server.Client.PutAsync(new PutRequest { Model = Model, Kind = Kind.Document, Ids = { ids }, Vectors = vectors });
        }
        catch (RpcException e)
        {
            return e;
        }
        for (int i = 0; i < ids.Length; i++) acknowledged[ids[i]] = Wire.Row(vectors, i);
        return null;
    }

    private static async Task AssertServedAsync(ServerProcess server, Dictionary<string, byte[]> acknowledged)
    {
        var ids = acknowledged.Keys.ToArray();
        var got = await server.Client.GetAsync(new GetRequest { Model = Model, Kind = Kind.Document, Ids = { ids } });
        for (int i = 0; i < ids.Length; i++)
        {
            Assert.True(got.Sources[i] == RowSource.Cached, $"acknowledged row {ids[i]} is missing");
            Assert.Equal(acknowledged[ids[i]], Wire.Row(got.Vectors, i));
        }
        Assert.Equal((uint)ids.Length, got.FoundCount);
    }

    private static async Task AssertServingAsync(ServerProcess server)
    {
        var health = await new Health.HealthClient(server.Channel).CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
    }
}
