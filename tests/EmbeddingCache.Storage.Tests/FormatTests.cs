using System.Buffers;
using MessagePack;

namespace EmbeddingCache.Storage.Tests;

/// <summary>The sidecar codec and the index, on their own.</summary>
public sealed class FormatTests
{
    [Fact]
    public void Sidecar_records_round_trip_for_every_string_format()
    {
        (ContentKey? Key, string? Id)[] rows =
        [
            (Rows.Key(1), null), (null, "a"), (Rows.Key(2), ""), (Rows.Key(3), new string('x', 31)),
            (null, new string('y', 32)), (Rows.Key(4), new string('z', 255)), (null, new string('é', 200)), (Rows.Key(5), new string('w', 70000)),
        ];
        byte[] bytes = Encode(rows);

        var keys = new ContentKey?[rows.Length];
        var ids = new ContentKey?[rows.Length];
        Assert.Equal(KeySidecar.Stop.Limit, KeySidecar.Read(bytes, rows.Length, keys, ids, out int records, out long consumed));
        Assert.Equal(rows.Length, records);
        Assert.Equal(bytes.Length, consumed);
        for (int i = 0; i < rows.Length; i++)
        {
            Assert.Equal(rows[i].Key, keys[i]);
            Assert.Equal(rows[i].Id is null ? null : IdKey.FromId(rows[i].Id!), ids[i]);
        }

        // Python reads exactly these bytes as [key, id] pairs; the MessagePack library agrees too.
        var reader = new MessagePackReader(bytes);
        for (int i = 0; i < rows.Length; i++)
        {
            Assert.Equal(2, reader.ReadArrayHeader());
            if (!reader.TryReadNil())
            {
                Assert.Equal(16, reader.ReadBytes()!.Value.Length);
            }

            Assert.Equal(rows[i].Id, reader.TryReadNil() ? null : reader.ReadString());
        }
    }

    [Fact]
    public void A_sidecar_cut_anywhere_reads_its_whole_records_only()
    {
        (ContentKey? Key, string? Id)[] rows = [(Rows.Key(1), "first"), (Rows.Key(2), new string('q', 40)), (null, "third")];
        byte[] bytes = Encode(rows);
        int[] ends = [.. Enumerable.Range(1, rows.Length).Select(n => Encode(rows[..n]).Length)];
        for (int cut = 0; cut < bytes.Length; cut++)
        {
            var keys = new ContentKey?[3];
            var ids = new ContentKey?[3];
            KeySidecar.Stop stop = KeySidecar.Read(bytes.AsSpan(0, cut), 3, keys, ids, out int records, out long consumed);
            Assert.Equal(KeySidecar.Stop.EndOfFile, stop);
            Assert.Equal(ends.Count(e => e <= cut), records);
            Assert.Equal(records == 0 ? 0 : ends[records - 1], consumed);
        }
    }

    [Theory]
    [InlineData(new byte[] { 0x00 })]
    [InlineData(new byte[] { 0x93, 0xC0, 0xC0, 0xC0 })]
    [InlineData(new byte[] { 0x92, 0xC0, 0xC0 })]
    [InlineData(new byte[] { 0x92, 0xC4, 0x03, 1, 2, 3, 0xC0 })]
    [InlineData(new byte[] { 0x92, 0xC0, 0x01 })]
    [InlineData(new byte[] { 0x92, 0xC0, 0xDB, 0xFF, 0xFF, 0xFF, 0xFF })]
    public void Bytes_that_are_not_a_record_are_invalid(byte[] bytes)
    {
        var keys = new ContentKey?[1];
        var ids = new ContentKey?[1];
        Assert.Equal(KeySidecar.Stop.Invalid, KeySidecar.Read(bytes, 1, keys, ids, out int records, out _));
        Assert.Equal(0, records);
    }

    [Fact]
    public void The_index_keeps_the_newest_location_through_growth()
    {
        var index = new KeyIndex();
        for (int n = 0; n < 50_000; n++)
        {
            index.Set(Rows.Key(n), (uint)n);
        }

        for (int n = 0; n < 50_000; n += 3)
        {
            index.Set(Rows.Key(n), uint.MaxValue - 1 - (uint)n);
        }

        Assert.Equal(50_000, index.Count);
        for (int n = 0; n < 50_000; n++)
        {
            Assert.True(index.TryGetValue(Rows.Key(n), out uint location));
            Assert.Equal(n % 3 == 0 ? uint.MaxValue - 1 - (uint)n : (uint)n, location);
        }

        Assert.False(index.TryGetValue(Rows.Key(-1), out _));
        index.Set(new ContentKey(0, 0), 0); // the all-zero key and location 0 are ordinary values
        Assert.True(index.TryGetValue(new ContentKey(0, 0), out uint zero));
        Assert.Equal(0u, zero);
    }

    [Fact]
    public void The_index_costs_at_most_25_bytes_an_entry_when_sized_and_31_25_while_it_grows()
    {
        const int Entries = 200_000;
        var sized = new KeyIndex();
        sized.EnsureCapacity(Entries);
        for (int n = 0; n < Entries; n++)
        {
            sized.Set(Rows.Key(n), (uint)n);
        }

        Assert.True(sized.TableBytes <= Entries * 25L + 40, $"{sized.TableBytes} bytes for {Entries} entries sized up front");

        // Right after each resize the table is at its emptiest: that is where the bytes per entry peak.
        var grown = new KeyIndex();
        long previousBytes = grown.TableBytes;
        for (int n = 0; n < Entries; n++)
        {
            grown.Set(Rows.Key(n), (uint)n);
            if (grown.TableBytes != previousBytes && grown.Count >= 1000)
            {
                Assert.True(grown.TableBytes <= grown.Count * 31.25 + 40, $"{grown.TableBytes} bytes for {grown.Count} entries after growing");
            }

            previousBytes = grown.TableBytes;
        }
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(65536, 16)]
    [InlineData(65537, 17)]
    [InlineData(StorageOptions.MaxSegmentRows, 27)]
    public void A_row_location_packs_segment_and_row_into_32_bits(int segmentRows, int rowBits)
    {
        var addressing = RowAddressing.ForSegmentRows(segmentRows);
        Assert.Equal(rowBits, addressing.RowBits);
        int lastSegment = addressing.MaxSegments - 1;
        uint location = addressing.Pack(lastSegment, segmentRows - 1);
        Assert.NotEqual(uint.MaxValue, location);
        Assert.Equal(lastSegment, addressing.SegmentOf(location));
        Assert.Equal(segmentRows - 1, addressing.RowOf(location));
    }

    [Fact]
    public async Task Readers_never_miss_a_published_key_while_the_index_grows()
    {
        var index = new KeyIndex();
        ContentKey[] keys = [.. Enumerable.Range(0, 200_000).Select(Rows.Key)];
        int published = 0;
        using var stop = new CancellationTokenSource();
        Task reader = Task.Factory.StartNew(() =>
        {
            var random = new Random(1);
            while (!stop.IsCancellationRequested)
            {
                int limit = Volatile.Read(ref published);
                if (limit == 0)
                {
                    continue;
                }

                int n = random.Next(limit);
                if (!index.TryGetValue(keys[n], out uint location) || location != n)
                {
                    throw new InvalidOperationException($"key {n} of {limit} published: {location}");
                }
            }
        }, TaskCreationOptions.LongRunning);

        for (int n = 0; n < keys.Length; n++)
        {
            index.Set(keys[n], (uint)n);
            Volatile.Write(ref published, n + 1);
            if (n % 20_000 == 0)
            {
                // Outgrown tables are native memory freed by their finalizers: one must never go while a reader holds it.
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        }

        await stop.CancelAsync();
        await reader;
    }

    [Fact]
    public void Ids_longer_than_the_limit_are_refused()
    {
        var batch = new RowBatch(2, 1);
        Assert.Throws<ArgumentException>(() => batch.Add(null, new string('€', (RowBatch.MaxIdBytes / 3) + 1), [1, 2]));
        Assert.Throws<ArgumentException>(() => batch.Add(null, null, [1, 2]));
        Assert.Throws<ArgumentException>(() => batch.Add(null, "a", [1, 2, 3]));
        batch.Add(null, new string('a', RowBatch.MaxIdBytes), [1, 2]);
        Assert.Equal(1, batch.Count);
    }

    private static byte[] Encode((ContentKey? Key, string? Id)[] rows)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(buffer);
        foreach ((ContentKey? key, string? id) in rows)
        {
            KeySidecar.WriteRecord(ref writer, key, id);
        }

        writer.Flush();
        return buffer.WrittenSpan.ToArray();
    }
}

public sealed class ShortSha256Tests
{
    [Fact]
    public void Matches_the_platform_sha256_for_every_short_length()
    {
        var random = new Random(42);
        for (int length = 0; length <= ShortSha256.MaxLength; length++)
        {
            for (int trial = 0; trial < 20; trial++)
            {
                byte[] data = new byte[length];
                random.NextBytes(data);
                byte[] expected = System.Security.Cryptography.SHA256.HashData(data);
                Assert.Equal(ContentKey.ReadFrom(expected), ShortSha256.Hash(data));
            }
        }

        Assert.Equal("e3b0c44298fc1c149afbf4c8996fb924", ContentKey.FromText("").ToString());
        Assert.Equal(
            ContentKey.ReadFrom(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(new string('k', 500)))),
            ContentKey.FromText(new string('k', 500)));
    }
}
