using System.Security.Cryptography;
using System.Text;
using EmbeddingCache.Server.Hosting;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Options;

namespace EmbeddingCache.Server.Services;

/// <summary>
/// When <see cref="ServerOptions.ApiKey"/> is set, every EmbeddingCache call must carry
/// <c>authorization: Bearer &lt;key&gt;</c>; health and reflection stay open so that probes and grpcurl work.
/// </summary>
internal sealed class ApiKeyInterceptor(IOptions<ServerOptions> options) : Interceptor
{
    private const string ProtectedPrefix = "/embeddingcache.v1.";
    private readonly byte[]? expected = string.IsNullOrEmpty(options.Value.ApiKey) ? null : Encoding.UTF8.GetBytes("Bearer " + options.Value.ApiKey);

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, responseStream, context);
    }

    private void Authorize(ServerCallContext context)
    {
        if (expected is null || !context.Method.StartsWith(ProtectedPrefix, StringComparison.Ordinal)) return;
        string? presented = context.RequestHeaders.GetValue("authorization");
        // Fixed-time comparison: response timing must not reveal how much of a guessed key was right.
        if (presented is null || !CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(presented), expected))
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                "this server requires an API key: send the metadata 'authorization: Bearer <key>' (Client(..., api_key=...) in Python)"));
        }
    }
}
