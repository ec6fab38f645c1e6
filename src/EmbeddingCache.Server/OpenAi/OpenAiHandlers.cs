using System.Text.Json;
using EmbeddingCache.Engine;
using EmbeddingCache.Server.Services;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Server.OpenAi;

/// <summary>
/// The OpenAI-compatible routes, thin: read the request, call the engine as Embed and ListModels do, answer in
/// OpenAI's shape. Every refusal is an OpenAI-style error.
/// </summary>
internal sealed class OpenAiHandlers(EmbeddingCacheEngine engine)
{
    /// <summary><c>POST /v1/embeddings</c>: one embedding per input text, from the cache or computed and cached.</summary>
    public async Task EmbeddingsAsync(HttpContext context)
    {
        try
        {
            EmbeddingsRequest request;
            using (var body = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted).ConfigureAwait(false))
            {
                request = EmbeddingsRequest.Parse(body.RootElement);
            }
            using var result = await engine.EmbedAsync(
                new EmbedCommand(request.Model, request.Kind, request.Input, [], VectorDType.Float32, CacheOnly: false),
                context.RequestAborted).ConfigureAwait(false);
            CacheMetrics.Answered(request.Model, request.Kind, result);
            if (request.Dimensions is { } dimensions && dimensions != result.Vectors.Dims)
            {
                throw OpenAiException.Invalid("dimensions",
                    $"'dimensions' is {dimensions} but '{request.Model}' makes {result.Vectors.Dims}-dimensional vectors, and this server does not shorten them: omit 'dimensions' or send {result.Vectors.Dims}");
            }
            await WriteEmbeddingsAsync(context, request, result.Vectors).ConfigureAwait(false);
        }
        catch (Exception e) when (Refusal(e) is { } refusal)
        {
            await OpenAiErrors.WriteAsync(context, refusal).ConfigureAwait(false);
        }
    }

    /// <summary><c>GET /v1/models</c>: every model the server knows, in OpenAI's list shape.</summary>
    public async Task ModelsAsync(HttpContext context)
    {
        context.Response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(context.Response.Body, OpenAiErrors.Json);
        json.WriteStartObject();
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        foreach (var model in engine.ListModels())
        {
            json.WriteStartObject();
            json.WriteString("id", model.Name);
            json.WriteString("object", "model");
            json.WriteNumber("created", 0);
            json.WriteString("owned_by", "embedding-cache");
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static OpenAiException? Refusal(Exception e) => e switch
    {
        OpenAiException openAi => openAi,
        CacheRequestException cache => OpenAiErrors.From(cache),
        JsonException json => OpenAiException.Invalid(null, $"the request body is not valid JSON: {json.Message}"),
        // Kestrel's refusal of a body over MaxReceiveMessageBytes (413), or a malformed one.
        BadHttpRequestException http => new OpenAiException(http.StatusCode, "invalid_request_error", null,
            http.StatusCode == StatusCodes.Status413PayloadTooLarge ? "request_too_large" : null,
            http.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? "the request body is over this server's limit (EmbeddingCache:MaxReceiveMessageBytes): send fewer texts per request"
                : http.Message),
        _ => null,
    };

    /// <summary>
    /// OpenAI's reply: <c>{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}</c>, each
    /// embedding a list of floats or, for <c>base64</c>, its little-endian float32 bytes in base64. Usage counts no tokens:
    /// cached vectors are served without tokenizing.
    /// </summary>
    private static async Task WriteEmbeddingsAsync(HttpContext context, EmbeddingsRequest request, PackedVectors vectors)
    {
        context.Response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(context.Response.Body, OpenAiErrors.Json);
        json.WriteStartObject();
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        var rowBytes = vectors.Dims * sizeof(float);
        for (var row = 0; row < vectors.Count; row++)
        {
            var bytes = vectors.Data.Span.Slice(row * rowBytes, rowBytes);
            json.WriteStartObject();
            json.WriteString("object", "embedding");
            json.WriteNumber("index", row);
            if (request.Base64)
            {
                json.WriteBase64String("embedding", bytes);
            }
            else
            {
                json.WriteStartArray("embedding");
                foreach (var value in System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes)) json.WriteNumberValue(value);
                json.WriteEndArray();
            }
            json.WriteEndObject();
            if (json.BytesPending > FlushBytes) await json.FlushAsync(context.RequestAborted).ConfigureAwait(false);
        }
        json.WriteEndArray();
        json.WriteString("model", request.Model);
        json.WriteStartObject("usage");
        json.WriteNumber("prompt_tokens", 0);
        json.WriteNumber("total_tokens", 0);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>Bytes of reply buffered before they are sent: a large reply is not held whole in memory twice.</summary>
    private const int FlushBytes = 64 * 1024;
}
