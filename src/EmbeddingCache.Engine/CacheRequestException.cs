using System.Diagnostics.CodeAnalysis;

namespace EmbeddingCache.Engine;

/// <summary>What went wrong with a request, in the terms a client acts on; the service maps each to a gRPC status.</summary>
public enum CacheErrorKind
{
    /// <summary>The request itself is malformed: fix it and send it again.</summary>
    InvalidArgument,
    /// <summary>The model is unknown.</summary>
    NotFound,
    /// <summary>The request is well formed but the model cannot serve it (store-only miss, broken model folder).</summary>
    FailedPrecondition,
    /// <summary>Over a configured limit, a saturated queue, or a full disk.</summary>
    ResourceExhausted,
    /// <summary>The server is shutting down.</summary>
    Unavailable,
}

/// <summary>A request the engine refuses, with a message a person can act on.</summary>
public sealed class CacheRequestException(CacheErrorKind kind, string message, string? field = null, Exception? inner = null)
    : Exception(message, inner)
{
    /// <summary>What kind of failure this is.</summary>
    public CacheErrorKind Kind { get; } = kind;

    /// <summary>The request field at fault, when one is.</summary>
    public string? Field { get; } = field;

    [DoesNotReturn]
    internal static void ThrowInvalid(string field, string message) =>
        throw new CacheRequestException(CacheErrorKind.InvalidArgument, message, field);

    [DoesNotReturn]
    internal static void Throw(CacheErrorKind kind, string message, Exception? inner = null) =>
        throw new CacheRequestException(kind, message, null, inner);
}
