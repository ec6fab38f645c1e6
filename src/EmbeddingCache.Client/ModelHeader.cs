using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace EmbeddingCache.Client;

/// <summary>
/// The <c>embcache-model</c> request header: the model a call names, sent beside the message so that a proxy (nginx's
/// gRPC module) can route on it without parsing protobuf. The server ignores it; the message's <c>model</c> field is what
/// it serves.
/// </summary>
public static class ModelHeader
{
    /// <summary>The header's name: hyphenated, since nginx drops header names with underscores by default.</summary>
    public const string Name = "embcache-model";

    /// <summary>
    /// <paramref name="headers"/> with the header added for <paramref name="model"/>, or unchanged when the name could not be
    /// a header value (empty, or not printable ASCII: the server refuses such a name with its own message).
    /// </summary>
    public static Metadata? Add(Metadata? headers, string model)
    {
        if (!CanCarry(model) || headers?.Get(Name) is not null) return headers;
        var withModel = new Metadata();
        foreach (var entry in headers ?? []) withModel.Add(entry);
        withModel.Add(Name, model);
        return withModel;
    }

    private static bool CanCarry(string model) => model.Length > 0 && model.All(c => c is >= ' ' and <= '~');
}

/// <summary>Adds <see cref="ModelHeader"/> to every unary call whose request has a <c>model</c> field, generated client included.</summary>
internal sealed class ModelHeaderInterceptor : Interceptor
{
    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, WithModel(request, context));

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context, BlockingUnaryCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, WithModel(request, context));

    private static ClientInterceptorContext<TRequest, TResponse> WithModel<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context)
        where TRequest : class
        where TResponse : class
    {
        if (request is not IMessage message || ModelOf(message) is not { } model) return context;
        var headers = ModelHeader.Add(context.Options.Headers, model);
        return headers == context.Options.Headers
            ? context
            : new ClientInterceptorContext<TRequest, TResponse>(context.Method, context.Host, context.Options.WithHeaders(headers!));
    }

    private static string? ModelOf(IMessage message) =>
        message.Descriptor.FindFieldByName("model") is { FieldType: FieldType.String } field ? (string)field.Accessor.GetValue(message) : null;
}
