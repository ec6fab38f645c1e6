using System.Text;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Health.V1;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// Invariant N3 at the level of the real server: corrupt and foreign files planted in the artifacts root before it
/// starts are moved to quarantine/&lt;model&gt;/ and named in the log (QuarantinedFile), and the rest is served byte for byte.
/// </summary>
public sealed class CorruptFileTests(ITestOutputHelper output) : ServerTest(output)
{
    private const string Planted = "planted";
    private const string BrokenManifest = "broken-manifest";
    private const int Dims = 12;
    private const int SegmentRows = 8;
    private const int Segments = 8;

    [Fact]
    public async Task Bad_files_are_quarantined_at_start_and_every_good_row_is_served_byte_for_byte()
    {
        string segmentRows = $"--EmbeddingCache:Storage:SegmentRows={SegmentRows}";
        var writer = await StartServerAsync(segmentRows);
        var rows = new Dictionary<string, byte[]>();
        var random = new Random(11);
        for (int segment = 0; segment < Segments; segment++)
        {
            // One Put per segment: segment n holds ids s{n}-0 .. s{n}-7.
            var segmentIds = Enumerable.Range(0, SegmentRows).Select(i => $"s{segment}-{i}").ToArray();
            var vectors = Wire.Pack(Wire.RandomRows(random, SegmentRows, Dims), Dims);
            await writer.Client.PutAsync(new PutRequest { Model = Planted, Kind = Kind.Document, Ids = { segmentIds }, Vectors = vectors });
            for (int i = 0; i < segmentIds.Length; i++) rows[segmentIds[i]] = Wire.Row(vectors, i);
        }
        var texts = Wire.Texts(seed: 12, count: 5);
        var embedded = await writer.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
        await writer.Client.PutAsync(new PutRequest
        {
            Model = BrokenManifest,
            Kind = Kind.Query,
            Ids = { "q" },
            Vectors = Wire.Pack(Wire.RandomRows(random, 1, 4), 4),
        });
        await writer.StopAsync();

        string documents = Path.Combine(Artifacts.Path, "embeddings", Planted, "document");
        string Npy(int n) => Path.Combine(documents, $"{n:D6}.npy");
        string Sidecar(int n) => Path.Combine(documents, $"{n:D6}.keys.msgpack");
        Assert.All(Enumerable.Range(0, Segments), n => Assert.True(File.Exists(Npy(n)), $"segment {n} should exist"));
        TruncateTo(Npy(1), 40);                                              // cut inside the header
        Patch(Npy(2), 0, "\0\0\0\0\0\0"u8);                                  // not a .npy at all
        ReplaceInHeader(Npy(3), "'<f4'", "'<f8'");                           // another dtype
        ReplaceInHeader(Npy(4), $", {Dims})", $", {Dims + 1})");             // another width
        await File.WriteAllBytesAsync(Sidecar(5), [0xc1, 0xc1, 0x00, 0xff, 0x13, 0x37]); // 0xc1 is never MessagePack
        long rowBytes = Dims * 4;
        TruncateTo(Npy(6), new FileInfo(Npy(6)).Length - (long)(2.5 * rowBytes)); // a torn tail: 5 whole rows left
        await File.WriteAllTextAsync(Path.Combine(documents, "notes.txt"), "a file this server never writes");
        await File.WriteAllTextAsync(Path.Combine(Artifacts.Path, "embeddings", BrokenManifest, "manifest.json"), "{ \"dims\": 4, oops");

        var server = await StartServerAsync(segmentRows);

        var health = await new Health.HealthClient(server.Channel).CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
        // Quarantined at start, before any request touched these models, and each move named in the log.
        string[] expectedMoves =
        [
            $"{Planted}/document-000001.npy", $"{Planted}/document-000002.npy", $"{Planted}/document-000002.keys.msgpack",
            $"{Planted}/document-000003.npy", $"{Planted}/document-000003.keys.msgpack", $"{Planted}/document-000004.npy",
            $"{Planted}/document-000004.keys.msgpack", $"{Planted}/document-000005.npy", $"{Planted}/document-000005.keys.msgpack",
            $"{Planted}/document-notes.txt", $"{BrokenManifest}/cache-manifest.json",
        ];
        var logged = server.Log.Split('\n').Where(l => l.Contains("[1007] QuarantinedFile: ", StringComparison.Ordinal)).ToList();
        Output.WriteLine(string.Join('\n', logged));
        foreach (string moved in expectedMoves)
        {
            Assert.True(File.Exists(Path.Combine(Artifacts.Path, "quarantine", moved)), $"quarantine/{moved} is missing");
            Assert.Contains(logged, l => l.Contains($"quarantine/{moved}", StringComparison.Ordinal));
        }
        Assert.Contains($"{Planted}/document-000001.keys.msgpack", Directory.GetFiles(Path.Combine(Artifacts.Path, "quarantine", Planted)).Select(f => $"{Planted}/{Path.GetFileName(f)}"));
        Assert.Empty(server.ErrorLines());

        // Good rows byte for byte; rows of quarantined segments and of the cut tail are missing, never garbage.
        var ids = rows.Keys.ToArray();
        var got = await server.Client.GetAsync(new GetRequest { Model = Planted, Kind = Kind.Document, Ids = { ids } });
        for (int i = 0; i < ids.Length; i++)
        {
            int segment = ids[i][1] - '0';
            int row = ids[i][3] - '0';
            bool kept = segment is 0 or 7 || (segment == 6 && row < 5);
            Assert.True(kept == (got.Sources[i] == RowSource.Cached), $"{ids[i]}: {got.Sources[i]}");
            if (kept) Assert.Equal(rows[ids[i]], Wire.Row(got.Vectors, i));
        }
        var cached = await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
        Assert.All(cached.Sources, s => Assert.Equal(RowSource.Cached, s));
        Assert.Equal(embedded.Vectors.Data, cached.Vectors.Data);

        // Writes go on, past the highest segment number seen; numpy reads every file left under embeddings/.
        var more = Wire.Pack(Wire.RandomRows(random, 3, Dims), Dims);
        await server.Client.PutAsync(new PutRequest { Model = Planted, Kind = Kind.Document, Ids = { "new-0", "new-1", "new-2" }, Vectors = more });
        var fresh = await server.Client.GetAsync(new GetRequest { Model = Planted, Kind = Kind.Document, Ids = { "new-0", "new-1", "new-2" } });
        Assert.Equal(more.Data, fresh.Vectors.Data);
        await Python.RunAsync("read_cache_files.py", Artifacts.Path);
        Assert.Empty(server.ErrorLines());
    }

    private static void TruncateTo(string path, long length)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.SetLength(length);
    }

    private static void Patch(string path, long offset, ReadOnlySpan<byte> bytes)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.Position = offset;
        stream.Write(bytes);
    }

    /// <summary>Edits the text of a .npy header in place; same length, so only the meaning changes.</summary>
    private static void ReplaceInHeader(string path, string from, string to)
    {
        Assert.Equal(from.Length, to.Length);
        byte[] head = new byte[128];
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read)) stream.ReadExactly(head);
        string header = Encoding.ASCII.GetString(head);
        int at = header.IndexOf(from, StringComparison.Ordinal);
        Assert.True(at > 0, $"'{from}' not in the header of {path}: {header}");
        Patch(path, at, Encoding.ASCII.GetBytes(to));
    }
}
