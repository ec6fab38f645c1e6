using System.Text.Json;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// kill -9 of the real server during streams of Put and Embed: after each restart every acknowledged row is
/// there byte for byte, nothing appears that no client sent, nothing is duplicated or zero, numpy loads every file.
/// </summary>
public sealed class CrashRecoveryTests(ITestOutputHelper output) : ServerTest(output)
{
    private const string StoreOnly = "crash-external";
    private const int Dims = 12;

    /// <summary>EMBCACHE_CRASH_KILLS raises the count for a longer soak; the suite runs at least 20.</summary>
    private static int Kills => int.TryParse(Environment.GetEnvironmentVariable("EMBCACHE_CRASH_KILLS"), out int n) && n > 20 ? n : 20;

    [Fact]
    public async Task Every_acknowledged_row_survives_kill_9_at_varied_moments()
    {
        var random = new Random(7);
        var acknowledgedIds = new Dictionary<string, byte[]>();      // Put rows acknowledged, by id
        var acknowledgedTexts = new Dictionary<string, byte[]>();    // Embed rows acknowledged, by content key
        var sentIds = new HashSet<string>();
        var sentKeys = new HashSet<string>();
        int round = 0;

        for (int kill = 0; kill < Kills; kill++)
        {
            var server = await StartServerAsync("--EmbeddingCache:Storage:SegmentRows=64");
            await VerifyAcknowledgedAsync(server, acknowledgedIds, acknowledgedTexts);

            using var stop = new CancellationTokenSource();
            var putter = Task.Run(async () =>
            {
                var local = new Random(random.Next());
                while (!stop.IsCancellationRequested)
                {
                    int n = 1 + local.Next(40);
                    var ids = Enumerable.Range(0, n).Select(i => $"r{Interlocked.Increment(ref round)}-{i}").ToArray();
                    var rows = Wire.RandomRows(local, n, Dims);
                    lock (sentIds) sentIds.UnionWith(ids);
                    try
                    {
                        await server.Client.PutAsync(new PutRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { ids }, Vectors = Wire.Pack(rows, Dims) });
                    }
                    catch (RpcException)
                    {
                        return; // the server died under this call: not acknowledged
                    }
                    var packed = Wire.Pack(rows, Dims);
                    lock (acknowledgedIds)
                    {
                        for (int i = 0; i < n; i++) acknowledgedIds[ids[i]] = Wire.Row(packed, i);
                    }
                }
            });
            var embedder = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    var texts = Wire.Texts(seed: Interlocked.Increment(ref round), count: 4, prefix: "crash");
                    lock (sentKeys) sentKeys.UnionWith(texts.Select(Wire.ContentKeyHex));
                    EmbedResponse reply;
                    try
                    {
                        reply = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
                    }
                    catch (RpcException)
                    {
                        return;
                    }
                    lock (acknowledgedTexts)
                    {
                        for (int i = 0; i < texts.Length; i++) acknowledgedTexts[texts[i]] = Wire.Row(reply.Vectors, i);
                    }
                }
            });

            // A different moment in the write stream each time: before, during and between group commits.
            await Task.Delay(30 + random.Next(500));
            await server.KillAsync();
            await stop.CancelAsync();
            await Task.WhenAll(putter, embedder);
        }

        var final = await StartServerAsync();
        await VerifyAcknowledgedAsync(final, acknowledgedIds, acknowledgedTexts);
        await final.StopAsync();

        var files = JsonDocument.Parse(await Python.RunAsync("read_cache_files.py", Artifacts.Path)).RootElement;
        var idRows = files.GetProperty($"{StoreOnly}/document").EnumerateArray().Select(r => r[1].GetString()!).ToList();
        Assert.Equal(idRows.Count, idRows.Distinct().Count());                      // none duplicated
        Assert.All(idRows, id => Assert.Contains(id, sentIds));                      // none phantom
        Assert.All(acknowledgedIds.Keys, id => Assert.Contains(id, idRows));         // none missing
        var keyRows = files.GetProperty($"{Wire.MiniLM}/document").EnumerateArray().Select(r => r[0].GetString()!).ToList();
        Assert.Equal(keyRows.Count, keyRows.Distinct().Count());
        Assert.All(keyRows, key => Assert.Contains(key, sentKeys));
        Output.WriteLine($"{Kills} kills survived; {acknowledgedIds.Count} acknowledged Put rows and " +
                         $"{acknowledgedTexts.Count} acknowledged Embed rows checked; {idRows.Count + keyRows.Count} rows on disk");
        Assert.True(acknowledgedIds.Count > Kills && acknowledgedTexts.Count > 0, "the load should have been acknowledged between kills");
    }

    private static async Task VerifyAcknowledgedAsync(
        ServerProcess server, Dictionary<string, byte[]> acknowledgedIds, Dictionary<string, byte[]> acknowledgedTexts)
    {
        if (acknowledgedIds.Count > 0)
        {
            var ids = acknowledgedIds.Keys.ToArray();
            var got = await server.Client.GetAsync(new GetRequest { Model = StoreOnly, Kind = Kind.Document, Ids = { ids } });
            for (int i = 0; i < ids.Length; i++)
            {
                Assert.True(got.Sources[i] == RowSource.Cached, $"acknowledged row {ids[i]} is missing after kill -9");
                Assert.Equal(acknowledgedIds[ids[i]], Wire.Row(got.Vectors, i));
            }
        }
        if (acknowledgedTexts.Count > 0)
        {
            var texts = acknowledgedTexts.Keys.ToArray();
            var got = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
            for (int i = 0; i < texts.Length; i++)
            {
                Assert.True(got.Sources[i] == RowSource.Cached, $"acknowledged text '{texts[i]}' is missing after kill -9");
                Assert.Equal(acknowledgedTexts[texts[i]], Wire.Row(got.Vectors, i));
            }
        }
    }
}
