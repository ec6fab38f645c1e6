using System.Runtime.InteropServices;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// Hit replies are built from pooled buffers (issue 5). Whatever the server does inside, the bytes on the wire must
/// be exactly the proto's GetResponse / EmbedResponse, and a buffer must never go back to the pool (and be reused by
/// another call) before its reply is sent: many concurrent calls of different sizes and dtypes would show it.
/// </summary>
[Collection(SharedServerCollection.Name)]
public sealed class HitReplyTests(InProcessServer shared, ITestOutputHelper output) : SharedServerTest(shared, output)
{
    private const string Model = "pooled";
    private const int Dims = 384;
    private const int Rows = 400;

    private static readonly Marshaller<byte[]> RawBytes = Marshallers.Create(bytes => bytes, bytes => bytes);

    [Fact]
    public async Task Concurrent_hit_replies_are_the_protos_bytes_exactly()
    {
        var server = UseSharedServer();
        var random = new Random(11);
        var vectors = Wire.RandomRows(random, Rows, Dims);
        string[] ids = [.. Enumerable.Range(0, Rows).Select(n => $"doc-{n}")];
        string[] texts = [.. Enumerable.Range(0, Rows).Select(n => $"text number {n}")];
        await server.Client.PutAsync(new PutRequest { Model = Model, Kind = Kind.Document, Ids = { ids }, Texts = { texts }, Vectors = Wire.Pack(vectors, Dims) });

        var invoker = server.Channel.CreateCallInvoker();
        var getRaw = new Method<GetRequest, byte[]>(MethodType.Unary, "embeddingcache.v1.EmbeddingCache", "Get", Marshallers.Create(r => r.ToByteArray(), GetRequest.Parser.ParseFrom), RawBytes);
        var embedRaw = new Method<EmbedRequest, byte[]>(MethodType.Unary, "embeddingcache.v1.EmbeddingCache", "Embed", Marshallers.Create(r => r.ToByteArray(), EmbedRequest.Parser.ParseFrom), RawBytes);

        var calls = Enumerable.Range(0, 16).Select(client => Task.Run(async () =>
        {
            var mine = new Random(100 + client);
            for (var call = 0; call < 15; call++)
            {
                var count = mine.Next(1, 300);
                int[] rows = [.. Enumerable.Range(0, count).Select(_ => mine.Next(Rows + 20))]; // beyond Rows: missing
                var dtype = mine.Next(2) == 0 ? DType.Float32 : DType.Float16;

                var get = new GetRequest { Model = Model, Kind = Kind.Document, Ids = { rows.Select(r => $"doc-{r}") }, Dtype = dtype };
                var getBytes = await invoker.AsyncUnaryCall(getRaw, null, new CallOptions(), get);
                var expectedGet = ExpectedGet(vectors, rows, dtype);
                Assert.Equal(expectedGet.ToByteArray(), getBytes);
                Assert.Equal(expectedGet, GetResponse.Parser.ParseFrom(getBytes));

                int[] hits = [.. rows.Where(r => r < Rows)];
                var embed = new EmbedRequest { Model = Model, Kind = Kind.Document, Texts = { hits.Select(r => texts[r]) }, Dtype = dtype, CacheOnly = true };
                var embedBytes = await invoker.AsyncUnaryCall(embedRaw, null, new CallOptions(), embed);
                var expectedEmbed = ExpectedEmbed(vectors, hits, dtype);
                Assert.Equal(expectedEmbed.ToByteArray(), embedBytes);
                Assert.Equal(expectedEmbed, EmbedResponse.Parser.ParseFrom(embedBytes));
            }
        }));
        await Task.WhenAll(calls);
        Assert.Empty(server.ErrorLines());
    }

    /// <summary>The reply as the proto defines it, built with the generated types from the vectors that were Put.</summary>
    private static GetResponse ExpectedGet(float[] vectors, int[] rows, DType dtype)
    {
        var reply = new GetResponse { Vectors = Pack(vectors, rows, dtype) };
        reply.Sources.AddRange(rows.Select(r => r < Rows ? RowSource.Cached : RowSource.Missing));
        reply.FoundCount = (uint)rows.Count(r => r < Rows);
        reply.MissingCount = (uint)rows.Count(r => r >= Rows);
        return reply;
    }

    private static EmbedResponse ExpectedEmbed(float[] vectors, int[] rows, DType dtype)
    {
        var reply = new EmbedResponse { Vectors = Pack(vectors, rows, dtype), Fingerprint = "", CachedCount = (uint)rows.Length };
        reply.Sources.AddRange(rows.Select(_ => RowSource.Cached));
        return reply;
    }

    /// <summary>Rows of <paramref name="vectors"/> (zero rows past <see cref="Rows"/>), packed little-endian in <paramref name="dtype"/>.</summary>
    private static Vectors Pack(float[] vectors, int[] rows, DType dtype)
    {
        var values = new float[rows.Length * Dims];
        for (var i = 0; i < rows.Length; i++)
        {
            if (rows[i] < Rows) vectors.AsSpan(rows[i] * Dims, Dims).CopyTo(values.AsSpan(i * Dims));
        }
        var data = dtype == DType.Float16
            ? MemoryMarshal.AsBytes(values.Select(v => (Half)v).ToArray().AsSpan()).ToArray()
            : MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        return new Vectors { Count = (uint)rows.Length, Dims = Dims, Dtype = dtype, Data = ByteString.CopyFrom(data) };
    }
}
