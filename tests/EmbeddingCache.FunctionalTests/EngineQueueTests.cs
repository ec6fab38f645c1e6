using System.Runtime.InteropServices;
using EmbeddingCache.Engine;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;
using EmbeddingCache.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// The engine in process over a real artifacts directory and the real model, with its batcher held by the batcher's
/// gate, so that what happens to queued work when requests are cancelled or the queue is full is seen step by step.
/// </summary>
public sealed class EngineQueueTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);

    private readonly TempDirectory artifacts = new();
    private readonly ManualResetEventSlim gate = new(initialState: false);

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        gate.Set();
        gate.Dispose();
        artifacts.Dispose();
        return Task.CompletedTask;
    }

    [Fact]
    public async Task A_cancelled_request_does_not_poison_another_waiting_on_the_same_text()
    {
        await using var held = await OpenAsync(new EncoderOptions());
        var engine = held.Engine;
        var batcher = await HeldBatcherAsync(held);

        using var cancel = new CancellationTokenSource();
        var owner = engine.EmbedAsync(Embed("shared text", "owner's own text"), cancel.Token);
        await Wait.UntilAsync(() => batcher.QueuedTexts == 2, "the owner's two texts to be queued", Patience);
        // The second request waits on the owner for "shared text" and queues its own text.
        var waiter = engine.EmbedAsync(Embed("shared text", "waiter's own text"), CancellationToken.None);
        await Wait.UntilAsync(() => batcher.QueuedTexts == 3, "the waiter's own text to be queued behind the owner's", Patience);

        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => owner.WaitAsync(Patience));
        gate.Set();
        var result = await waiter.WaitAsync(Patience);

        Assert.All(result.Sources, source => Assert.Equal(RowSource.Computed, source));
        var again = await engine.EmbedAsync(Embed("shared text"), CancellationToken.None);
        Assert.Equal(RowSource.Cached, again.Sources[0]);
        Assert.Equal(result.Vectors.Data[..again.Vectors.Data.Length].ToArray(), again.Vectors.Data.ToArray());
        Assert.Contains(MemoryMarshal.Cast<byte, float>(again.Vectors.Data.Span).ToArray(), value => value != 0);
        Assert.Equal(2, batcher.TextsDropped);
        Assert.Equal(0, batcher.QueuedTexts);
    }

    [Fact]
    public async Task A_request_that_finds_the_queue_full_past_the_wait_limit_gets_resource_exhausted_saying_what_to_do()
    {
        await using var held = await OpenAsync(new EncoderOptions { MaxQueuedTexts = 2, MaxQueueWait = TimeSpan.FromMilliseconds(50) });
        var engine = held.Engine;
        var batcher = await HeldBatcherAsync(held);

        var first = engine.EmbedAsync(Embed("first", "second"), CancellationToken.None);
        await Wait.UntilAsync(() => batcher.QueuedTexts == 2, "the first request's two texts to fill the queue", Patience);
        // The same text as a queued one is waited on, not queued, so only the new text needs room.
        var refused = await Assert.ThrowsAsync<CacheRequestException>(() => engine.EmbedAsync(Embed("first", "third"), CancellationToken.None));

        Assert.Equal(CacheErrorKind.ResourceExhausted, refused.Kind);
        Assert.Contains("retry after a pause, or send fewer texts at once", refused.Message);
        Assert.Contains("MaxQueuedTexts", refused.Message);
        gate.Set();
        var result = await first.WaitAsync(Patience);
        Assert.All(result.Sources, source => Assert.Equal(RowSource.Computed, source));
        var retried = await engine.EmbedAsync(Embed("first", "third"), CancellationToken.None).WaitAsync(Patience);
        Assert.Equal([RowSource.Cached, RowSource.Computed], retried.Sources);
    }

    private async Task<HeldEngine> OpenAsync(EncoderOptions encoder)
    {
        var engine = EmbeddingCacheEngine.Open(
            new EngineOptions { ArtifactsDirectory = artifacts.Path, Encoder = encoder }, NullLoggerFactory.Instance);
        await engine.LoadPreloadedModelsAsync(CancellationToken.None);
        return new HeldEngine(engine, gate);
    }

    private async Task<EncodingBatcher> HeldBatcherAsync(HeldEngine held)
    {
        var engine = held.Engine;
        var batcher = await engine.BatcherAsync(Wire.MiniLM, CancellationToken.None);
        batcher.BatchGate = gate;
        return batcher;
    }

    private static EmbedCommand Embed(params string[] texts) =>
        new(Wire.MiniLM, VectorKind.Document, texts, [], VectorDType.Float32, CacheOnly: false);

    /// <summary>The engine, disposed with its batcher's gate open, so that a failed assertion cannot leave the worker held.</summary>
    private sealed class HeldEngine(EmbeddingCacheEngine engine, ManualResetEventSlim gate) : IAsyncDisposable
    {
        public EmbeddingCacheEngine Engine => engine;

        public async ValueTask DisposeAsync()
        {
            gate.Set();
            await engine.DisposeAsync();
        }
    }
}
