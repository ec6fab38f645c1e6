using EmbeddingCache.Engine;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace EmbeddingCache.Server.Hosting;

/// <summary>
/// gRPC refuses a message over its size limits with RESOURCE_EXHAUSTED and a fixed text that names no setting. This
/// rewrites that text, in the trailers (or the headers of a trailers-only reply) before they are sent, to say which
/// setting was exceeded, by how much it allows and what to do. It runs outside gRPC because a request message is
/// refused from its header before any interceptor or service code sees the call.
/// </summary>
internal sealed class MessageSizeStatusMiddleware(RequestDelegate next, IOptions<ServerOptions> server, IOptions<EngineOptions> engine)
{
    private const string ReceivedTooLarge = "Received message exceeds the maximum configured message size.";
    private const string SendingTooLarge = "Sending message exceeds the maximum configured message size.";
    private const string MessageKey = "grpc-message";

    private readonly string receivedText = Uri.EscapeDataString(
        $"The request message exceeds the maximum configured message size, {server.Value.MaxReceiveMessageBytes} bytes " +
        $"({ServerOptions.Section}:{nameof(ServerOptions.MaxReceiveMessageBytes)}): split it into smaller requests, or raise that setting.");

    private readonly string sendingText = Uri.EscapeDataString(
        $"The reply exceeds the maximum configured message size, {engine.Value.MaxSendMessageBytes} bytes " +
        $"({EngineOptions.SettingName(nameof(EngineOptions.MaxSendMessageBytes))}): ask for less per call, or raise that setting " +
        "(and the client's max receive message length).");

    public async Task InvokeAsync(HttpContext context)
    {
        await next(context).ConfigureAwait(false);
        if (context.Features.Get<IHttpResponseTrailersFeature>()?.Trailers is { } trailers) Rewrite(trailers);
        if (!context.Response.HasStarted) Rewrite(context.Response.Headers);
    }

    private void Rewrite(IHeaderDictionary headers)
    {
        if (!headers.TryGetValue(MessageKey, out var value) || value.Count != 1) return;
        // grpc-message is percent-encoded on the wire (gRPC's HTTP/2 spec).
        var text = Uri.UnescapeDataString(value.ToString());
        if (text == ReceivedTooLarge) headers[MessageKey] = receivedText;
        else if (text == SendingTooLarge) headers[MessageKey] = sendingText;
    }
}
