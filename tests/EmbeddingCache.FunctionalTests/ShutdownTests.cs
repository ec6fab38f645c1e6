using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>A graceful stop finishes what it acknowledged to start and refuses the rest with UNAVAILABLE.</summary>
public sealed class ShutdownTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task Stopping_server_finishes_running_requests_and_answers_new_ones_unavailable()
    {
        var server = await StartServerAsync();
        var texts = Wire.Texts(seed: 13, count: 64);
        var running = server.Client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } }).ResponseAsync;
        // The request is being computed once the server has counted its misses.
        while ((await server.Client.ListModelsAsync(new ListModelsRequest())).Models.Single(m => m.Name == Wire.MiniLM).Misses < 64)
        {
            Assert.False(running.IsCompleted, "the Embed finished before the test could stop the server under it");
        }

        Posix.Terminate(server.ProcessId);
        RpcException? refused = null;
        while (refused is null && !server.HasExited)
        {
            try
            {
                await server.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { "x" } });
            }
            catch (RpcException e)
            {
                refused = e;
            }
        }

        var reply = await running;
        Assert.Equal(64u, reply.Vectors.Count);
        Assert.NotNull(refused);
        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        await server.StopAsync();

        // What the stopping server acknowledged is on disk.
        var restarted = await StartServerAsync();
        var got = await restarted.Client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Texts = { texts } });
        Assert.All(got.Sources, s => Assert.Equal(RowSource.Cached, s));
        Assert.Equal(reply.Vectors.Data, got.Vectors.Data);
    }
}
