using System.Collections.Concurrent;
using EmbeddingCache.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Benchmarks.HitPath;

/// <summary>
/// The floor of the comparison: a bare Grpc.AspNetCore server, in this process, on 127.0.0.1 with a free port,
/// answering <c>Get</c> with a precomputed <see cref="GetResponse"/> of as many rows as ids were asked for (the same
/// shape the real server sends: packed float32, one source per row, the counts), with no lookup at all. What a
/// hit costs beyond this is what the cache adds to gRPC and protobuf.
/// </summary>
public sealed class FloorServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private FloorServer(WebApplication app, string address)
    {
        _app = app;
        Address = address;
    }

    /// <summary>The server's <c>http://127.0.0.1:PORT</c> address.</summary>
    public string Address { get; }

    /// <summary>Starts the server with a payload for up to <paramref name="maxRows"/> rows.</summary>
    public static async Task<FloorServer> StartAsync(int maxRows, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureEndpointDefaults(endpoint => endpoint.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc(grpc =>
        {
            grpc.MaxReceiveMessageSize = null;
            grpc.MaxSendMessageSize = null;
        });
        builder.Services.AddSingleton(new PrecomputedPayload(maxRows));
        // The benchmark owns Ctrl+C and SIGTERM (it stops every peer on them); the host's console lifetime would swallow them.
        builder.Services.AddSingleton<IHostLifetime, NoSignalLifetime>();
        var app = builder.Build();
        app.MapGrpcService<FloorService>();
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        return new FloorServer(app, app.Urls.First());
    }

    /// <summary>Stops the server.</summary>
    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>One payload of random float32 rows; a response of N rows wraps its first N rows, built once per N.</summary>
    internal sealed class PrecomputedPayload(int maxRows)
    {
        private readonly byte[] _rows = RandomRows(maxRows);
        private readonly ConcurrentDictionary<int, GetResponse> _responses = new();

        public GetResponse For(int rows) => _responses.GetOrAdd(rows, count =>
        {
            if (count * HitDataset.Dims * sizeof(float) > _rows.Length)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"the floor holds a payload of at most {maxRows} rows"));
            }

            var response = new GetResponse
            {
                Vectors = new Vectors
                {
                    Count = (uint)count,
                    Dims = HitDataset.Dims,
                    Dtype = DType.Float32,
                    Data = UnsafeByteOperations.UnsafeWrap(_rows.AsMemory(0, count * HitDataset.Dims * sizeof(float))),
                },
                FoundCount = (uint)count,
            };
            response.Sources.AddRange(Enumerable.Repeat(RowSource.Cached, count));
            return response;
        });

        private static byte[] RandomRows(int rows)
        {
            var floats = new float[rows * HitDataset.Dims];
            var random = new Random(7);
            for (var i = 0; i < floats.Length; i++)
            {
                floats[i] = (float)(random.NextDouble() * 2 - 1);
            }

            var bytes = new byte[floats.Length * sizeof(float)];
            Buffer.BlockCopy(floats, 0, bytes, 0, bytes.Length);
            return bytes;
        }
    }

    private sealed class NoSignalLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private sealed class FloorService(PrecomputedPayload payload) : Protocol.V1.EmbeddingCache.EmbeddingCacheBase
    {
        public override Task<GetResponse> Get(GetRequest request, ServerCallContext context) =>
            Task.FromResult(payload.For(request.Ids.Count + request.Texts.Count));
    }
}
