using System.Net;
using EmbeddingCache.Engine;
using EmbeddingCache.Server.Hosting;
using EmbeddingCache.Server.Services;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

namespace EmbeddingCache.Server.OpenAi;

/// <summary>
/// The OpenAI-compatible HTTP endpoint (<c>POST /v1/embeddings</c>, <c>GET /v1/models</c>) on its own loopback port,
/// <see cref="ServerOptions.OpenAiPort"/>. It is a second, small web app in the server's process, over the same engine,
/// cache, limits and API key: gRPC here is HTTP/2 without TLS, OpenAI's clients speak HTTP/1.1, and Kestrel cannot
/// serve both on one cleartext port. It starts and stops with the server.
/// </summary>
internal sealed partial class OpenAiEndpoint(
    EmbeddingCacheEngine engine, ApiKey apiKey, IOptions<ServerOptions> options, ILoggerFactory loggerFactory) : IHostedService, IAsyncDisposable
{
    private readonly ILogger logger = loggerFactory.CreateLogger<OpenAiEndpoint>();
    private WebApplication? app;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // Nothing of the server's own configuration (urls, Kestrel endpoints, certificates) applies to this listener.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.Sources.Clear();
        builder.Logging.ClearProviders().AddProvider(new ForwardingLoggerProvider(loggerFactory))
            // The server's log says where this endpoint listens (OpenAiEndpointListening), not Kestrel's "Now listening on".
            .AddFilter("Microsoft.Hosting.Lifetime", LogLevel.None);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, options.Value.OpenAiPort, listen => listen.Protocols = HttpProtocols.Http1);
            kestrel.Limits.MaxRequestBodySize = options.Value.MaxReceiveMessageBytes;
        });
        var web = builder.Build();
        var handlers = new OpenAiHandlers(engine);
        web.Use(async (context, next) =>
        {
            if (apiKey.Accepts(context.Request.Headers.Authorization)) await next(context).ConfigureAwait(false);
            else await OpenAiErrors.WriteAsync(context, OpenAiErrors.MissingApiKey).ConfigureAwait(false);
        });
        web.MapPost("/v1/embeddings", handlers.EmbeddingsAsync);
        web.MapGet("/v1/models", handlers.ModelsAsync);
        web.MapFallback(context => OpenAiErrors.WriteAsync(context, OpenAiErrors.UnknownRoute(context.Request)));
        await web.StartAsync(cancellationToken).ConfigureAwait(false);
        app = web;
        Listening(logger, options.Value.OpenAiPort);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (app is not null) await app.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (app is not null) await app.DisposeAsync().ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 5, EventName = "OpenAiEndpointListening", Level = LogLevel.Information,
        Message = "OpenAI-compatible endpoint at http://127.0.0.1:{Port}/v1 (POST /v1/embeddings, GET /v1/models)")]
    private static partial void Listening(ILogger logger, int port);

    /// <summary>Hands this app's loggers out of the server's own factory, so its lines go where the server's go.</summary>
    private sealed class ForwardingLoggerProvider(ILoggerFactory target) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => target.CreateLogger(categoryName);

        public void Dispose()
        {
        }
    }
}
