using EmbeddingCache.Server.Hosting;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace EmbeddingCache.Server.Services;

/// <summary>
/// When <see cref="ServerOptions.ApiKey"/> is set, every EmbeddingCache call must carry
/// <c>authorization: Bearer &lt;key&gt;</c>; health and reflection stay open so that probes and grpcurl work.
/// </summary>
internal sealed class ApiKeyInterceptor(ApiKey apiKey) : Interceptor
{
    private const string ProtectedPrefix = "/embeddingcache.v1.";

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
        if (!context.Method.StartsWith(ProtectedPrefix, StringComparison.Ordinal)) return;
        if (!apiKey.Accepts(context.RequestHeaders.GetValue("authorization")))
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                "this server requires an API key: send the metadata 'authorization: Bearer <key>' (Client(..., api_key=...) in Python)"));
        }
    }
}
