using System.Security.Cryptography;
using System.Text;
using EmbeddingCache.Server.Hosting;
using Microsoft.Extensions.Options;

namespace EmbeddingCache.Server.Services;

/// <summary>The check of <see cref="ServerOptions.ApiKey"/>, shared by the gRPC service and the OpenAI-compatible endpoint.</summary>
internal sealed class ApiKey(IOptions<ServerOptions> options)
{
    private readonly byte[]? expected = string.IsNullOrEmpty(options.Value.ApiKey) ? null : Encoding.UTF8.GetBytes("Bearer " + options.Value.ApiKey);

    /// <summary>True when no key is configured, or <paramref name="authorization"/> is <c>Bearer &lt;key&gt;</c>.</summary>
    public bool Accepts(string? authorization) =>
        expected is null
        // Fixed-time comparison: response timing must not reveal how much of a guessed key was right.
        || (authorization is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(authorization), expected));
}
