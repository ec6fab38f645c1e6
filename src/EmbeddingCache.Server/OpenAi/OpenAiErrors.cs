using System.Text.Json;
using EmbeddingCache.Engine;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Server.OpenAi;

/// <summary>A refusal in OpenAI's terms: the HTTP status and the <c>error</c> object's type, param and code.</summary>
internal sealed class OpenAiException(int status, string type, string? param, string? code, string message) : Exception(message)
{
    public int Status { get; } = status;

    public string Type { get; } = type;

    public string? Param { get; } = param;

    public string? Code { get; } = code;

    public static OpenAiException Invalid(string? param, string message) => new(400, "invalid_request_error", param, null, message);
}

/// <summary>
/// OpenAI-style error replies, <c>{"error": {"message", "type", "param", "code"}}</c> with the status OpenAI's clients
/// map to their error classes (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 413, 429 RateLimitError).
/// </summary>
internal static class OpenAiErrors
{
    /// <summary>How every reply of the endpoint is written: quotes and angle brackets stay readable in curl (JSON, never HTML).</summary>
    public static JsonWriterOptions Json { get; } = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static OpenAiException MissingApiKey { get; } = new(401, "invalid_request_error", null, "invalid_api_key",
        "this server requires an API key: send the header 'Authorization: Bearer <key>' (api_key / apiKey in OpenAI's clients)");

    public static OpenAiException UnknownRoute(HttpRequest request) => new(404, "invalid_request_error", null, "unknown_url",
        $"no route for {request.Method} {request.Path}: this server serves POST /v1/embeddings and GET /v1/models");

    /// <summary>The engine's refusal as OpenAI's clients expect it; over-limit requests are 413, a saturated encoder 429 (retry later).</summary>
    public static OpenAiException From(CacheRequestException e)
    {
        var param = e.Field == "texts" ? "input" : e.Field;
        return e.Kind switch
        {
            CacheErrorKind.InvalidArgument => new(400, "invalid_request_error", param, null, e.Message),
            CacheErrorKind.NotFound => new(404, "invalid_request_error", "model", "model_not_found", e.Message),
            CacheErrorKind.FailedPrecondition => new(400, "invalid_request_error", "model", "model_cannot_compute", e.Message),
            CacheErrorKind.ResourceExhausted when e.InnerException is EncoderSaturatedException => new(429, "rate_limit_error", null, "rate_limit_exceeded", e.Message),
            CacheErrorKind.ResourceExhausted when e.InnerException is StorageFullException => new(507, "server_error", null, "insufficient_storage", e.Message),
            CacheErrorKind.ResourceExhausted => new(413, "invalid_request_error", param, "request_too_large", e.Message),
            CacheErrorKind.Unavailable => new(503, "server_error", null, "unavailable", e.Message),
            _ => new(500, "server_error", null, null, e.Message),
        };
    }

    public static async Task WriteAsync(HttpContext context, OpenAiException error)
    {
        context.Response.StatusCode = error.Status;
        context.Response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(context.Response.Body, Json);
        json.WriteStartObject();
        json.WriteStartObject("error");
        json.WriteString("message", error.Message);
        json.WriteString("type", error.Type);
        json.WriteString("param", error.Param);
        json.WriteString("code", error.Code);
        json.WriteEndObject();
        json.WriteEndObject();
    }
}
