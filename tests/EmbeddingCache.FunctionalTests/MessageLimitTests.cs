using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;
using Xunit.Abstractions;
using CacheClient = EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// Every size limit, just under and just over, for every RPC: under is served, over is RESOURCE_EXHAUSTED (or the
/// documented INVALID_ARGUMENT for an id or a width) with a message naming the setting to raise; never UNKNOWN.
/// The sweeps run on servers configured with small limits; one real 77 MB Put checks the defaults.
/// </summary>
[Collection(SharedServerCollection.Name)]
public sealed class MessageLimitTests(InProcessServer shared, ITestOutputHelper output) : SharedServerTest(shared, output)
{
    private const int ReceiveLimit = 1 << 20;
    private const int RowLimit = 100;
    private const int TextLimit = 100;
    private const int IdLimit = 50;
    private const int DimsLimit = 300;
    private const long ScoreLimit = 9_999;
    private const string Stored = "limits";
    private const int StoredDims = 4;
    private const string Service = "embeddingcache.v1.EmbeddingCache";

    private static readonly TimeSpan CallDeadline = TimeSpan.FromSeconds(60);
    private static readonly Marshaller<byte[]> RawBytes = Marshallers.Create(b => b, b => b);

    private Task<ServerProcess> StartSmallLimitsServerAsync() => StartServerAsync(
        $"--EmbeddingCache:MaxReceiveMessageBytes={ReceiveLimit}", $"--EmbeddingCache:MaxRowsPerRequest={RowLimit}",
        $"--EmbeddingCache:MaxTextLength={TextLimit}", $"--EmbeddingCache:MaxIdLength={IdLimit}",
        $"--EmbeddingCache:MaxDims={DimsLimit}", $"--EmbeddingCache:MaxScoresPerRequest={ScoreLimit}",
        "--EmbeddingCache:RefusalsPerSecond=0");

    /// <summary>A valid request of each RPC, padded with an unknown field to exactly the limit, and to one byte more.</summary>
    [Fact]
    public async Task A_request_message_of_exactly_the_receive_limit_is_served_and_one_byte_more_is_refused_naming_the_setting()
    {
        var server = await StartSmallLimitsServerAsync();
        await server.Client.PutAsync(StoredPut(["x"], texts: []));
        var requests = new (string Method, MethodType Type, IMessage Request)[]
        {
            ("Embed", MethodType.Unary, new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "a" }, CacheOnly = true }),
            ("EmbedStream", MethodType.DuplexStreaming, new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "a" }, CacheOnly = true }),
            ("Get", MethodType.Unary, new GetRequest { Model = Stored, Kind = Kind.Document, Ids = { "x" } }),
            ("Put", MethodType.Unary, StoredPut(["y"], texts: [])),
            ("Score", MethodType.Unary, new ScoreRequest { Model = Wire.MiniLM, Queries = { "q" }, DocumentTexts = { "d" } }),
            ("ListModels", MethodType.Unary, new ListModelsRequest()),
            ("Invalidate", MethodType.Unary, new InvalidateRequest { Model = Wire.MiniLM, Kind = Kind.Query }),
        };
        foreach (var (method, type, request) in requests)
        {
            await CallRawAsync(server, method, type, Padded(request, ReceiveLimit));
            var refused = await Assert.ThrowsAsync<RpcException>(() => CallRawAsync(server, method, type, Padded(request, ReceiveLimit + 1)));
            Output.WriteLine($"{method}, {ReceiveLimit + 1} bytes: {refused.StatusCode}: {refused.Status.Detail}");
            AssertRefused(refused, StatusCode.ResourceExhausted, "EmbeddingCache:MaxReceiveMessageBytes");
        }
        Assert.Empty(server.ErrorLines());
    }

    /// <summary>Rows, text length, id length, dims and scores per request, on every RPC that carries them.</summary>
    [Fact]
    public async Task Each_request_limit_serves_its_maximum_and_refuses_one_more_naming_the_setting()
    {
        var server = await StartSmallLimitsServerAsync();
        var client = server.Client;
        string longText = new('t', TextLimit);
        string[] queries = [.. Enumerable.Range(0, 99).Select(i => $"query {i}"), longText];
        // The store-only model holds query vectors too, so that Score needs no encoder.
        await client.PutAsync(StoredPut(Ids(RowLimit), texts: []));
        await client.PutAsync(new PutRequest { Model = Stored, Kind = Kind.Query, Texts = { queries }, Vectors = Rows(queries.Length, StoredDims) });

        var cases = new (string Name, string Setting, StatusCode Over, Func<bool, Task> Send)[]
        {
            ("Embed texts", "MaxRowsPerRequest", StatusCode.ResourceExhausted, over => Embed(client, Texts(RowLimit + (over ? 1 : 0)))),
            ("Embed text length", "MaxTextLength", StatusCode.ResourceExhausted, over => Embed(client, ["a", Text(over)])),
            ("Embed id length", "MaxIdLength", StatusCode.InvalidArgument, over => client.EmbedAsync(new EmbedRequest
            {
                Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "a" }, Ids = { Id(over) }, CacheOnly = true,
            }).ResponseAsync),
            ("EmbedStream texts", "MaxRowsPerRequest", StatusCode.ResourceExhausted, over => Stream(client, Texts(RowLimit + (over ? 1 : 0)))),
            ("EmbedStream text length", "MaxTextLength", StatusCode.ResourceExhausted, over => Stream(client, [Text(over)])),
            ("Get ids", "MaxRowsPerRequest", StatusCode.ResourceExhausted, over => client.GetAsync(new GetRequest
            {
                Model = Stored, Kind = Kind.Document, Ids = { Ids(RowLimit + (over ? 1 : 0)) },
            }).ResponseAsync),
            ("Get texts", "MaxRowsPerRequest", StatusCode.ResourceExhausted, over => client.GetAsync(new GetRequest
            {
                Model = Stored, Kind = Kind.Document, Texts = { Texts(RowLimit + (over ? 1 : 0)) },
            }).ResponseAsync),
            ("Get text length", "MaxTextLength", StatusCode.ResourceExhausted, over => client.GetAsync(new GetRequest
            {
                Model = Stored, Kind = Kind.Document, Texts = { Text(over) },
            }).ResponseAsync),
            ("Get id length", "MaxIdLength", StatusCode.InvalidArgument, over => client.GetAsync(new GetRequest
            {
                Model = Stored, Kind = Kind.Document, Ids = { Id(over) },
            }).ResponseAsync),
            ("Put ids", "MaxRowsPerRequest", StatusCode.ResourceExhausted, over => client.PutAsync(StoredPut(Ids(RowLimit + (over ? 1 : 0)), texts: [])).ResponseAsync),
            ("Put text length", "MaxTextLength", StatusCode.ResourceExhausted, over => client.PutAsync(StoredPut([], [Text(over)])).ResponseAsync),
            ("Put id length", "MaxIdLength", StatusCode.InvalidArgument, over => client.PutAsync(StoredPut([Id(over)], texts: [])).ResponseAsync),
            ("Put dims", "MaxDims", StatusCode.InvalidArgument, over => client.PutAsync(new PutRequest
            {
                Model = $"wide-{over}", Kind = Kind.Document, Ids = { "w" }, Vectors = Rows(1, DimsLimit + (over ? 1 : 0)),
            }).ResponseAsync),
            ("Score documents", "MaxRowsPerRequest", StatusCode.ResourceExhausted, over => client.ScoreAsync(new ScoreRequest
            {
                Model = Stored, Queries = { queries[0] }, DocumentIds = { Ids(RowLimit + (over ? 1 : 0)) },
            }).ResponseAsync),
            ("Score query length", "MaxTextLength", StatusCode.ResourceExhausted, over => client.ScoreAsync(new ScoreRequest
            {
                Model = Stored, Queries = { Text(over) }, DocumentIds = { "id-0" },
            }).ResponseAsync),
            // 99 x 100 = 9,900 pairs are under the 9,999 allowed; 100 x 100 is one pair over.
            ("Score pairs", "MaxScoresPerRequest", StatusCode.ResourceExhausted, over => client.ScoreAsync(new ScoreRequest
            {
                Model = Stored, Queries = { queries.Take(over ? 100 : 99) }, DocumentIds = { Ids(RowLimit) },
            }).ResponseAsync),
            ("Rerank distinct candidates", "MaxRowsPerRequest", StatusCode.ResourceExhausted, over => client.ScoreAsync(
                Rerank(Stored, [queries[0], queries[1]], [Ids(RowLimit / 2), Ids(RowLimit + (over ? 1 : 0)).Skip(RowLimit / 2).ToArray()])).ResponseAsync),
            // 99 candidate lists of 100 and one of 99 are 9,999 pairs; a last list of 100 is one pair over.
            ("Rerank pairs", "MaxScoresPerRequest", StatusCode.ResourceExhausted, over => client.ScoreAsync(Rerank(Stored, queries,
                [.. Enumerable.Repeat(Ids(RowLimit), 99), Ids(RowLimit - (over ? 0 : 1))])).ResponseAsync),
        };
        foreach (var (name, setting, code, send) in cases)
        {
            await send(false);
            var refused = await Assert.ThrowsAsync<RpcException>(() => send(true));
            Output.WriteLine($"{name}, one over: {refused.StatusCode}: {refused.Status.Detail}");
            AssertRefused(refused, code, $"EmbeddingCache:{setting}");
        }
        Assert.Empty(server.ErrorLines());

        string Text(bool over) => over ? longText + "t" : longText;
        string Id(bool over) => new('i', IdLimit + (over ? 1 : 0));
    }

    /// <summary>
    /// The reply side. Get and Embed are refused before any row is gathered: a row of 256 float32 is 1,024 bytes plus
    /// its source byte, and 512 bytes cover the rest of the reply, so 64 rows fit in 66,560 bytes and 65 do not (42
    /// and 43 rows of MiniLM's 384 dims). Score is bounded by gRPC itself at exactly the limit.
    /// </summary>
    [Fact]
    public async Task A_reply_over_the_send_limit_is_resource_exhausted_naming_the_setting()
    {
        const int sendLimit = 66_560;
        var server = await StartServerAsync($"--EmbeddingCache:MaxSendMessageBytes={sendLimit}", "--EmbeddingCache:RefusalsPerSecond=0");
        var client = server.Client;
        await client.PutAsync(new PutRequest { Model = "wide", Kind = Kind.Document, Ids = { Ids(65) }, Vectors = Rows(65, 256) });
        string[] queries = [.. Enumerable.Range(0, RowLimit).Select(i => $"query {i}")];
        foreach (var chunk in queries.Chunk(40))
        {
            await client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { chunk } }); // under the limit: 42 rows
        }
        await client.PutAsync(new PutRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { Ids(RowLimit) }, Vectors = Rows(RowLimit, 384) });
        // The largest top_k whose Score reply still fits, from the reply's own encoding (every index and source is one byte).
        var fittingTopK = Enumerable.Range(0, RowLimit + 1).Last(k => ScoreReplyBytes(queries.Length, RowLimit, k) <= sendLimit);
        Assert.InRange(fittingTopK, 1, RowLimit - 1);

        var cases = new (string Name, Func<bool, Task> Send)[]
        {
            ("Get", over => client.GetAsync(new GetRequest { Model = "wide", Kind = Kind.Document, Ids = { Ids(over ? 65 : 64) } }).ResponseAsync),
            ("Embed", over => Embed(client, Texts(over ? 43 : 42))),
            ("EmbedStream", over => Stream(client, Texts(over ? 43 : 42))),
            ("Score", over => client.ScoreAsync(new ScoreRequest
            {
                Model = Wire.MiniLM, Queries = { queries }, DocumentIds = { Ids(RowLimit) }, TopK = (uint)(fittingTopK + (over ? 1 : 0)),
            }).ResponseAsync),
        };
        foreach (var (name, send) in cases)
        {
            await send(false);
            var refused = await Assert.ThrowsAsync<RpcException>(() => send(true));
            Output.WriteLine($"{name}, reply one over: {refused.StatusCode}: {refused.Status.Detail}");
            AssertRefused(refused, StatusCode.ResourceExhausted, "EmbeddingCache:MaxSendMessageBytes");
        }
        // Reranking gathers its candidates' rows to score them, not to send them: more rows than a reply may carry are served.
        var reranked = await client.ScoreAsync(Rerank(Wire.MiniLM, [queries[0]], [Ids(RowLimit)]));
        Assert.Equal([(uint)RowLimit], reranked.CandidateCounts);
        Assert.Empty(server.ErrorLines());
    }

    /// <summary>A GPU job's batch: 50,000 x 384 float32 (77 MB) in one Put, with the default settings, read back whole.</summary>
    [Fact]
    public async Task A_put_of_50000_rows_of_384_float32_succeeds_in_one_call_with_the_default_settings()
    {
        const int rows = 50_000;
        var server = UseSharedServer();
        var vectors = Rows(rows, 384);
        var request = new PutRequest { Model = "gpu-corpus", Kind = Kind.Document, Ids = { Ids(rows) }, Vectors = vectors };
        Output.WriteLine($"Put message: {request.CalculateSize()} bytes");
        Assert.True(request.CalculateSize() > 77_000_000);

        var reply = await server.Client.PutAsync(request);

        Assert.Equal((uint)rows, reply.Stored);
        var back = await server.Client.GetAsync(new GetRequest { Model = "gpu-corpus", Kind = Kind.Document, Ids = { Ids(rows) } });
        Assert.Equal((uint)rows, back.FoundCount);
        Assert.True(vectors.Data.Span.SequenceEqual(back.Vectors.Data.Span));
        Assert.Empty(server.ErrorLines());
    }

    private static void AssertRefused(RpcException refused, StatusCode expected, string setting)
    {
        Assert.Equal(expected, refused.StatusCode);
        Assert.Contains(setting, refused.Status.Detail, StringComparison.Ordinal);
    }

    private static PutRequest StoredPut(string[] ids, string[] texts) => new()
    {
        Model = Stored,
        Kind = Kind.Document,
        Ids = { ids },
        Texts = { texts },
        Vectors = Rows(Math.Max(ids.Length, texts.Length), StoredDims),
    };

    private static Vectors Rows(int rows, int dims) => Wire.Pack(Wire.RandomRows(new Random(rows * 31 + dims), rows, dims), dims);

    private static string[] Ids(int count) => [.. Enumerable.Range(0, count).Select(i => $"id-{i}")];

    private static string[] Texts(int count) => [.. Enumerable.Range(0, count).Select(i => $"text {i}")];

    private static Task Embed(CacheClient client, string[] texts) =>
        client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts }, CacheOnly = true }).ResponseAsync;

    private static async Task Stream(CacheClient client, string[] texts)
    {
        using var call = client.EmbedStream();
        await call.RequestStream.WriteAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts }, CacheOnly = true });
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal((uint)texts.Length, call.ResponseStream.Current.Vectors.Count);
        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None));
    }

    /// <summary>A Score request with a candidate list per query (reranking).</summary>
    private static ScoreRequest Rerank(string model, string[] queries, string[][] candidates)
    {
        var request = new ScoreRequest { Model = model, Queries = { queries } };
        foreach (var ids in candidates) request.Candidates.Add(new QueryCandidates { Ids = { ids } });
        return request;
    }

    /// <summary>The size of a Score reply of this shape, as the server encodes it.</summary>
    private static int ScoreReplyBytes(int queries, int documents, int topK)
    {
        var reply = new ScoreResponse
        {
            QueryCount = (uint)queries,
            DocumentCount = (uint)documents,
            Scores = ByteString.CopyFrom(new byte[queries * documents * sizeof(float)]),
            QuerySources = { Enumerable.Repeat(RowSource.Cached, queries) },
            DocumentSources = { Enumerable.Repeat(RowSource.Cached, documents) },
        };
        if (topK > 0)
        {
            for (var q = 0; q < queries; q++)
            {
                reply.Top.Add(new TopDocuments { Indexes = { Enumerable.Range(0, topK).Select(i => (uint)i) }, Scores = { new float[topK] } });
            }
        }
        return reply.CalculateSize();
    }

    /// <summary>
    /// <paramref name="request"/> encoded with an unknown length-delimited field appended (which the server keeps and
    /// ignores, as protobuf does) so that the message is exactly <paramref name="size"/> bytes.
    /// </summary>
    private static byte[] Padded(IMessage request, int size)
    {
        const int tag = (1000 << 3) | 2; // field 1000, length-delimited: a two-byte tag
        var body = request.ToByteArray();
        for (var lengthBytes = 1; lengthBytes <= 5; lengthBytes++)
        {
            var padding = size - body.Length - CodedOutputStream.ComputeRawVarint32Size(tag) - lengthBytes;
            if (padding < 0 || CodedOutputStream.ComputeRawVarint32Size((uint)padding) != lengthBytes) continue;
            using var stream = new MemoryStream(size);
            stream.Write(body);
            var output = new CodedOutputStream(stream);
            output.WriteTag(tag);
            output.WriteBytes(ByteString.CopyFrom(new byte[padding]));
            output.Flush();
            Assert.Equal(size, (int)stream.Length);
            return stream.ToArray();
        }
        throw new ArgumentOutOfRangeException(nameof(size), size, "cannot pad to that size");
    }

    /// <summary>Sends an already-encoded request and waits for the whole reply (every message of a stream).</summary>
    private static async Task CallRawAsync(ServerProcess server, string name, MethodType type, byte[] request)
    {
        var invoker = server.Channel.CreateCallInvoker();
        var method = new Method<byte[], byte[]>(type, Service, name, RawBytes, RawBytes);
        if (type == MethodType.Unary)
        {
            using var unary = invoker.AsyncUnaryCall(method, null, new CallOptions(deadline: DateTime.UtcNow + CallDeadline), request);
            await unary.ResponseAsync;
            return;
        }
        using var call = invoker.AsyncDuplexStreamingCall(method, null, new CallOptions(deadline: DateTime.UtcNow + CallDeadline));
        // The status comes on the response side: a refused message ends the call while its bytes are still being sent.
        var sending = SendAsync();
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            Assert.NotEmpty(call.ResponseStream.Current);
        }
        await sending;

        async Task SendAsync()
        {
            await call.RequestStream.WriteAsync(request);
            await call.RequestStream.CompleteAsync();
        }
    }
}
