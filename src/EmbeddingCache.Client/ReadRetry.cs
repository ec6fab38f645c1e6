using Grpc.Core;
using Grpc.Net.Client.Configuration;

namespace EmbeddingCache.Client;

/// <summary>
/// Reads (Get, Score, ListModels) that fail UNAVAILABLE are sent again, never writes. Behind nginx a read in flight on
/// a follower that dies fails so (nginx cannot resend a gRPC request it has streamed on), and the next attempt reaches
/// another follower; a read twice is harmless, a Put or Invalidate twice would be a second write.
/// </summary>
public static class ReadRetry
{
    private static readonly string[] ReadMethods = ["Get", "Score", "ListModels"];

    /// <summary>The channel's service config: the retry policy of the read methods.</summary>
    public static ServiceConfig ServiceConfig()
    {
        var reads = new MethodConfig
        {
            RetryPolicy = new RetryPolicy
            {
                MaxAttempts = 4,
                InitialBackoff = TimeSpan.FromMilliseconds(50),
                MaxBackoff = TimeSpan.FromSeconds(1),
                BackoffMultiplier = 2,
                RetryableStatusCodes = { StatusCode.Unavailable },
            },
        };
        foreach (var method in ReadMethods) reads.Names.Add(new MethodName { Service = "embeddingcache.v1.EmbeddingCache", Method = method });
        return new ServiceConfig { MethodConfigs = { reads } };
    }
}
