using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Testing;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>A connection that keeps making refused calls is slowed down; its answers stay right and others go on.</summary>
public sealed class RefusalBrakeTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task A_connection_flooding_refused_calls_is_braked_while_its_answers_stay_right_and_a_good_client_goes_on()
    {
        var server = await StartServerAsync("--EmbeddingCache:RefusalsPerSecond=5", "--EmbeddingCache:RefusalBrake=00:00:00.050");
        var bad = new EmbedRequest { Model = "../../etc/passwd", Kind = Kind.Document, Texts = { "x" } };

        for (int i = 0; i < 30; i++)
        {
            var refused = await Assert.ThrowsAsync<RpcException>(async () => await server.Client.EmbedAsync(bad));
            Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        }

        using var goodChannel = GrpcChannel.ForAddress(server.Address);
        var good = new Protocol.V1.EmbeddingCache.EmbeddingCacheClient(goodChannel);
        var reply = await good.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "a good call" } });
        Assert.Equal(1u, reply.Vectors.Count);

        // The brake is logged once, for the flooding connection only.
        await Wait.UntilAsync(() => server.Log.Contains("RefusalsBraked", StringComparison.Ordinal), "the server to log RefusalsBraked");
        Assert.Single(server.Log.Split('\n'), line => line.Contains("RefusalsBraked", StringComparison.Ordinal));
    }
}
