using EmbeddingCache.Engine;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace EmbeddingCache.Server.Services;

/// <summary>Turns the engine's refusals into gRPC status codes with their message, in one place.</summary>
internal sealed class CacheErrorInterceptor : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context).ConfigureAwait(false);
        }
        catch (CacheRequestException e)
        {
            throw ToRpcException(e);
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
        }
        catch (CacheRequestException e)
        {
            throw ToRpcException(e);
        }
    }

    private static RpcException ToRpcException(CacheRequestException e)
    {
        var code = e.Kind switch
        {
            CacheErrorKind.InvalidArgument => StatusCode.InvalidArgument,
            CacheErrorKind.NotFound => StatusCode.NotFound,
            CacheErrorKind.FailedPrecondition => StatusCode.FailedPrecondition,
            CacheErrorKind.ResourceExhausted => StatusCode.ResourceExhausted,
            CacheErrorKind.Unavailable => StatusCode.Unavailable,
            _ => StatusCode.Internal,
        };
        var trailers = new Metadata();
        if (e.Field is not null) trailers.Add("embcache-field", e.Field);
        return new RpcException(new Status(code, e.Message), trailers);
    }
}
