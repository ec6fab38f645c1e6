using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Text;
using Google.Protobuf;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;

namespace EmbeddingCache.Server.Hosting;

/// <summary>
/// Binds each gRPC service as Grpc.AspNetCore's own binder does (through the generated <c>BindService</c> its
/// <see cref="BindServiceMethodAttribute"/> names), but with request marshallers that refuse a message protobuf
/// cannot parse with INVALID_ARGUMENT and a message saying so. Grpc.AspNetCore parses a request before any
/// interceptor sees the call and answers a parse failure as UNKNOWN ("Exception was thrown by handler."), logged
/// as a server error: malformed bytes are the client's mistake, not the server's.
/// </summary>
internal sealed class ParsingServiceMethodProvider<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicMethods)] TService>
    : IServiceMethodProvider<TService>
    where TService : class
{
    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<TService> context)
    {
        for (Type? type = typeof(TService); type is not null; type = type.BaseType)
        {
            if (type.GetCustomAttribute<BindServiceMethodAttribute>() is not { } bind) continue;
            var bindMethod = bind.BindType.GetMethod(bind.BindMethodName, BindingFlags.Public | BindingFlags.Static, [typeof(ServiceBinderBase), type])
                ?? throw new InvalidOperationException($"{bind.BindType} has no {bind.BindMethodName}(ServiceBinderBase, {type.Name}) to bind {typeof(TService)}");
            // The generated BindService names each method and its handler's delegate type; with no service instance
            // the handlers are null, and each call's service comes from dependency injection as usual.
            bindMethod.Invoke(null, [new Binder(context), null]);
            return;
        }
    }

    /// <summary>Receives the generated methods and adds them with parsing request marshallers.</summary>
    private sealed class Binder(ServiceMethodProviderContext<TService> context) : ServiceBinderBase
    {
        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler) =>
            context.AddUnaryMethod(Parsing(method), Metadata(method.Name, [typeof(TRequest), typeof(ServerCallContext)], out var handlerMethod),
                Invoker<UnaryServerMethod<TService, TRequest, TResponse>>(handlerMethod));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler) =>
            context.AddServerStreamingMethod(Parsing(method), Metadata(method.Name, [typeof(TRequest), typeof(IServerStreamWriter<TResponse>), typeof(ServerCallContext)], out var handlerMethod),
                Invoker<ServerStreamingServerMethod<TService, TRequest, TResponse>>(handlerMethod));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler) =>
            context.AddClientStreamingMethod(Parsing(method), Metadata(method.Name, [typeof(IAsyncStreamReader<TRequest>), typeof(ServerCallContext)], out var handlerMethod),
                Invoker<ClientStreamingServerMethod<TService, TRequest, TResponse>>(handlerMethod));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler) =>
            context.AddDuplexStreamingMethod(Parsing(method), Metadata(method.Name, [typeof(IAsyncStreamReader<TRequest>), typeof(IServerStreamWriter<TResponse>), typeof(ServerCallContext)], out var handlerMethod),
                Invoker<DuplexStreamingServerMethod<TService, TRequest, TResponse>>(handlerMethod));

        private static Method<TRequest, TResponse> Parsing<TRequest, TResponse>(Method<TRequest, TResponse> method)
            where TRequest : class
            where TResponse : class
        {
            var parse = method.RequestMarshaller.ContextualDeserializer;
            string what = $"{method.FullName} request ({typeof(TRequest).Name})";
            var requestMarshaller = Marshallers.Create(method.RequestMarshaller.ContextualSerializer, payload =>
            {
                try
                {
                    return parse(payload);
                }
                catch (Exception e) when (e is InvalidProtocolBufferException or DecoderFallbackException)
                {
                    throw new RpcException(new Status(StatusCode.InvalidArgument,
                        $"the {what} is not a valid protobuf message: {e.Message} Send the message the service's .proto defines."));
                }
            });
            return new Method<TRequest, TResponse>(method.Type, method.ServiceName, method.Name, requestMarshaller, method.ResponseMarshaller);
        }

        /// <summary>The service's handler of that name and what Grpc.AspNetCore's binder gives as endpoint metadata.</summary>
        private static List<object> Metadata(string name, Type[] parameters, out MethodInfo handlerMethod)
        {
            handlerMethod = typeof(TService).GetMethod(name, BindingFlags.Public | BindingFlags.Instance, parameters)
                ?? throw new InvalidOperationException($"{typeof(TService)} has no method {name} to serve");
            List<object> metadata = [.. typeof(TService).GetCustomAttributes(inherit: true), .. handlerMethod.GetCustomAttributes(inherit: true)];
            metadata.Add(new HttpMethodMetadata(["POST"], acceptCorsPreflight: true));
            return metadata;
        }

        private static TDelegate Invoker<TDelegate>(MethodInfo handlerMethod)
            where TDelegate : Delegate =>
            (TDelegate)Delegate.CreateDelegate(typeof(TDelegate), handlerMethod);
    }
}
