using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Server.Hosting;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Nobody in: the API key, and which addresses count as exposed.</summary>
public sealed class SecurityTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task With_an_api_key_calls_need_it_and_health_stays_open()
    {
        var server = await StartServerAsync("--EmbeddingCache:ApiKey=s3cret-key");
        var request = new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "hello" } };

        var missing = await Assert.ThrowsAsync<RpcException>(async () => await server.Client.EmbedAsync(request));
        Assert.Equal(StatusCode.Unauthenticated, missing.StatusCode);
        Assert.Contains("authorization: Bearer", missing.Status.Detail);
        var wrong = await Assert.ThrowsAsync<RpcException>(async () =>
            await server.Client.ListModelsAsync(new ListModelsRequest(), new Metadata { { "authorization", "Bearer s3cret-kez" } }));
        Assert.Equal(StatusCode.Unauthenticated, wrong.StatusCode);

        var reply = await server.Client.EmbedAsync(request, new Metadata { { "authorization", "Bearer s3cret-key" } });
        Assert.Equal(1u, reply.Vectors.Count);
        var health = await new Grpc.Health.V1.Health.HealthClient(server.Channel).CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
        Assert.DoesNotContain(server.Log.Split('\n'), line => line.Contains("ExposedWithoutApiKey", StringComparison.Ordinal) || line.Contains("!!!", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("http://127.0.0.1:50051", true)]
    [InlineData("http://127.8.9.10:1", true)]
    [InlineData("http://localhost:50051", true)]
    [InlineData("http://[::1]:50051", true)]
    [InlineData("http://0.0.0.0:50051", false)]
    [InlineData("http://*:50051", false)]
    [InlineData("http://+:50051", false)]
    [InlineData("http://[::]:50051", false)]
    [InlineData("http://192.168.1.20:50051", false)]
    [InlineData("https://embeddings.example.org:443", false)]
    public void Only_loopback_addresses_count_as_private(string url, bool loopback) =>
        Assert.Equal(loopback, ServerHost.IsLoopback(url));
}
