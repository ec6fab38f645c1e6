using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Each bad request gets its status code and a message a person can act on, and harms nobody else.</summary>
public sealed class BadInputTests(ITestOutputHelper output) : ServerTest(output)
{
    public static TheoryData<string, StatusCode, string> Cases() => new()
    {
        { "empty model name", StatusCode.InvalidArgument, "model is empty" },
        { "model name leaving the root", StatusCode.InvalidArgument, "'/'" },
        { "model name with ..", StatusCode.InvalidArgument, "'..'" },
        { "model name with NUL", StatusCode.InvalidArgument, "U+0000" },
        { "over-long model name", StatusCode.InvalidArgument, "at most 128" },
        { "unspecified kind", StatusCode.InvalidArgument, "kind is unspecified" },
        { "ids and texts differ in length", StatusCode.InvalidArgument, "ids has 1 entries but texts has 2" },
        { "wrong vector byte count", StatusCode.InvalidArgument, "vectors.data has 12 bytes" },
        { "NaN in a vector", StatusCode.InvalidArgument, "is NaN" },
        { "infinity in a vector", StatusCode.InvalidArgument, "only finite values" },
        { "Put without ids or texts", StatusCode.InvalidArgument, "give ids and/or texts" },
        { "Put dims differ from the model", StatusCode.InvalidArgument, "has 384 dims" },
        { "Get with ids and texts", StatusCode.InvalidArgument, "either ids or texts" },
        { "unknown model", StatusCode.NotFound, "unknown model 'never-heard-of'" },
        { "miss on a store-only model", StatusCode.FailedPrecondition, "store-only" },
        { "too many texts", StatusCode.ResourceExhausted, "at most 64" },
        { "empty id", StatusCode.InvalidArgument, "ids[0] is empty" },
        { "message over the size limit", StatusCode.ResourceExhausted, "exceeds the maximum configured message size" },
        { "text over the length limit", StatusCode.ResourceExhausted, "at most 1000 are allowed" },
        { "id over the length limit", StatusCode.InvalidArgument, "at most 1024 are allowed" },
        { "too many scores", StatusCode.ResourceExhausted, "at most 100 are allowed" },
        { "more misses than the encoder queue holds", StatusCode.ResourceExhausted, "send at most 8 texts per call" },
        { "request protobuf cannot parse", StatusCode.InvalidArgument, "Embed request (EmbedRequest) is not a valid protobuf message" },
        { "stream message protobuf cannot parse", StatusCode.InvalidArgument, "EmbedStream request (EmbedRequest) is not a valid protobuf message" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Bad_request_gets_its_status_and_a_clear_message_while_good_requests_go_on(
        string name, StatusCode expected, string messagePart)
    {
        var server = await StartServerAsync(
            "--EmbeddingCache:MaxRowsPerRequest=64", "--EmbeddingCache:MaxReceiveMessageBytes=1048576", "--EmbeddingCache:MaxTextLength=1000",
            "--EmbeddingCache:MaxScoresPerRequest=100", "--EmbeddingCache:Encoder:MaxQueuedTexts=8");
        var client = server.Client;
        await client.PutAsync(new PutRequest { Model = "stored", Kind = Kind.Document, Ids = { "x" }, Vectors = Wire.Pack([1f, 2f], 2) });
        var goodTexts = Wire.Texts(seed: 11, count: 4);
        var baseline = await client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { goodTexts } });

        using var stop = new CancellationTokenSource();
        int good = 0;
        var goodClient = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested || good == 0)
            {
                var reply = await client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { goodTexts } });
                Assert.Equal(baseline.Vectors.Data, reply.Vectors.Data);
                Interlocked.Increment(ref good);
            }
        });

        var error = await Assert.ThrowsAsync<RpcException>(() => Send(server, name));
        Output.WriteLine($"{name}: {error.StatusCode}: {error.Status.Detail}");
        Assert.Equal(expected, error.StatusCode);
        Assert.Contains(messagePart, error.Status.Detail, StringComparison.Ordinal);

        // The same bad request many times over while the good client runs: it keeps getting right answers.
        for (int i = 0; i < 20; i++) await Assert.ThrowsAsync<RpcException>(() => Send(server, name));
        await stop.CancelAsync();
        await goodClient;
        Assert.True(good > 0);
        Assert.Empty(server.ErrorLines());
    }

    private static Task Send(ServerProcess server, string name)
    {
        var client = server.Client;
        var doc = Kind.Document;
        return name switch
        {
            "empty model name" => client.EmbedAsync(new EmbedRequest { Model = "", Kind = doc, Texts = { "a" } }).ResponseAsync,
            "model name leaving the root" => client.EmbedAsync(new EmbedRequest { Model = "a/../../etc", Kind = doc, Texts = { "a" } }).ResponseAsync,
            "model name with .." => client.GetAsync(new GetRequest { Model = "a..b", Kind = doc, Ids = { "x" } }).ResponseAsync,
            "model name with NUL" => client.PutAsync(new PutRequest { Model = "a\0b", Kind = doc, Ids = { "x" }, Vectors = Wire.Pack([1f], 1) }).ResponseAsync,
            "over-long model name" => client.InvalidateAsync(new InvalidateRequest { Model = new string('m', 129) }).ResponseAsync,
            "unspecified kind" => client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Texts = { "a" } }).ResponseAsync,
            "ids and texts differ in length" => client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = doc, Texts = { "a", "b" }, Ids = { "1" } }).ResponseAsync,
            "wrong vector byte count" => client.PutAsync(new PutRequest
            {
                Model = "stored",
                Kind = doc,
                Ids = { "y" },
                Vectors = new Vectors { Count = 1, Dims = 2, Dtype = DType.Float32, Data = ByteString.CopyFrom(new byte[12]) },
            }).ResponseAsync,
            "NaN in a vector" => client.PutAsync(new PutRequest { Model = "stored", Kind = doc, Ids = { "y" }, Vectors = Wire.Pack([1f, float.NaN], 2) }).ResponseAsync,
            "infinity in a vector" => client.PutAsync(new PutRequest { Model = "stored", Kind = doc, Ids = { "y" }, Vectors = Wire.Pack([float.PositiveInfinity, 1f], 2) }).ResponseAsync,
            "Put without ids or texts" => client.PutAsync(new PutRequest { Model = "stored", Kind = doc, Vectors = Wire.Pack([1f, 2f], 2) }).ResponseAsync,
            "Put dims differ from the model" => client.PutAsync(new PutRequest { Model = Wire.MiniLM, Kind = doc, Ids = { "y" }, Vectors = Wire.Pack([1f, 2f], 2) }).ResponseAsync,
            "Get with ids and texts" => client.GetAsync(new GetRequest { Model = "stored", Kind = doc, Ids = { "x" }, Texts = { "t" } }).ResponseAsync,
            "unknown model" => client.EmbedAsync(new EmbedRequest { Model = "never-heard-of", Kind = doc, Texts = { "a" } }).ResponseAsync,
            "miss on a store-only model" => client.EmbedAsync(new EmbedRequest { Model = "stored", Kind = doc, Texts = { "not there" } }).ResponseAsync,
            "too many texts" => client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = doc, Texts = { Enumerable.Repeat("t", 65) } }).ResponseAsync,
            "empty id" => client.GetAsync(new GetRequest { Model = "stored", Kind = doc, Ids = { "" } }).ResponseAsync,
            "message over the size limit" => client.PutAsync(new PutRequest { Model = "stored", Kind = doc, Ids = { "big" }, Vectors = Wire.Pack(new float[300_000], 300_000) }).ResponseAsync,
            "text over the length limit" => client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = doc, Texts = { "short", new string('x', 1001) } }).ResponseAsync,
            "id over the length limit" => client.GetAsync(new GetRequest { Model = "stored", Kind = doc, Ids = { new string('i', 1025) } }).ResponseAsync,
            "too many scores" => client.ScoreAsync(new ScoreRequest { Model = "stored", Queries = { Enumerable.Repeat("q", 11) }, DocumentIds = { Enumerable.Repeat("x", 10) } }).ResponseAsync,
            "more misses than the encoder queue holds" => client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = doc, Texts = { Wire.Texts(seed: Random.Shared.Next(), count: 9) } }).ResponseAsync,
            "request protobuf cannot parse" => server.Channel.CreateCallInvoker().AsyncUnaryCall(Raw("Embed", MethodType.Unary), null, default,
                new EmbedRequest { Model = Wire.MiniLM, Kind = doc, Texts = { "cut short" } }.ToByteArray()[..^1]).ResponseAsync,
            // The model name's bytes are not UTF-8.
            "stream message protobuf cannot parse" => RawStreamAsync(server, [0x0A, 0x02, 0xC3, 0x28]),
            _ => throw new ArgumentOutOfRangeException(nameof(name), name, "no such case"),
        };
    }

    private static Method<byte[], byte[]> Raw(string name, MethodType type)
    {
        var bytes = Marshallers.Create(b => b, b => b);
        return new(type, EmbeddingCache.Protocol.V1.EmbeddingCache.Descriptor.FullName, name, bytes, bytes);
    }

    private static async Task RawStreamAsync(ServerProcess server, byte[] message)
    {
        using var call = server.Channel.CreateCallInvoker().AsyncDuplexStreamingCall(Raw("EmbedStream", MethodType.DuplexStreaming), null, default);
        try
        {
            await call.RequestStream.WriteAsync(message);
            await call.RequestStream.CompleteAsync();
        }
        catch (InvalidOperationException)
        {
            // The server ended the call first: its status is read below.
        }
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            Assert.Fail("a reply to a message protobuf cannot parse");
        }
    }

    [Fact]
    public async Task A_stream_refused_mid_way_ends_the_clients_pending_write()
    {
        var server = await StartServerAsync();
        using var call = server.Client.EmbedStream();
        await call.RequestStream.WriteAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = (Kind)1000, Texts = { "refused" } });
        // Far over the HTTP/2 stream window: the write waits for window the server, having refused the call, never grants.
        var big = new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, CacheOnly = true, Texts = { Enumerable.Repeat(new string('e', 900), 1000) } };
        var writing = Task.Run(async () =>
        {
            for (int i = 0; i < 4; i++) await call.RequestStream.WriteAsync(big);
            await call.RequestStream.CompleteAsync();
        });
        var error = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        var ended = await Task.WhenAny(writing, Task.Delay(TimeSpan.FromSeconds(20)));
        Assert.True(ended == writing, "the client's write was still waiting 20 s after the call was refused");
    }

    [Fact]
    public async Task A_call_with_more_misses_than_the_encoder_queue_holds_gets_resource_exhausted_naming_the_limit()
    {
        var server = await StartServerAsync("--EmbeddingCache:Encoder:MaxQueuedTexts=2");
        var texts = Wire.Texts(seed: 41, count: 3);

        var error = await Assert.ThrowsAsync<RpcException>(async () =>
            await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } }));

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        Assert.Contains("send at most 2 texts per call", error.Status.Detail);
        var fits = await server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts.Take(2) } });
        Assert.Equal(2u, fits.ComputedCount);
    }
}
