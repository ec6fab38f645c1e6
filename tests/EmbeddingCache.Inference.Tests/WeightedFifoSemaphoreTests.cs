namespace EmbeddingCache.Inference.Tests;

/// <summary>The batcher's admission, alone: weights out of a capacity, first come first served, timeouts, cancelling, closing.</summary>
public sealed class WeightedFifoSemaphoreTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_weight_that_fits_is_taken_at_once()
    {
        var room = new WeightedFifoSemaphore(10);

        var entered = room.WaitAsync(4, Patience, CancellationToken.None);
        var filled = room.WaitAsync(6, Patience, CancellationToken.None);

        Assert.True(entered.IsCompletedSuccessfully);
        Assert.True(filled.IsCompletedSuccessfully);
        Assert.True(await entered);
        Assert.True(await filled);
        Assert.Equal(10, room.Taken);
    }

    [Fact]
    public async Task A_weight_that_does_not_fit_waits_until_enough_is_released()
    {
        var room = new WeightedFifoSemaphore(10);
        await room.WaitAsync(8, Patience, CancellationToken.None);

        var waiting = room.WaitAsync(5, Patience, CancellationToken.None);
        Assert.False(waiting.IsCompleted);
        room.Release(2);
        Assert.False(waiting.IsCompleted);
        Assert.Equal(6, room.Taken);
        room.Release(1);

        Assert.True(await waiting.WaitAsync(Patience));
        Assert.Equal(10, room.Taken);
    }

    [Fact]
    public async Task A_later_caller_that_would_fit_does_not_overtake_one_waiting()
    {
        var room = new WeightedFifoSemaphore(4);
        await room.WaitAsync(3, Patience, CancellationToken.None);

        var first = room.WaitAsync(2, Patience, CancellationToken.None);
        var later = room.WaitAsync(1, Patience, CancellationToken.None);
        Assert.False(first.IsCompleted);
        Assert.False(later.IsCompleted);
        Assert.Equal(3, room.Taken);

        room.Release(3);
        Assert.True(await first.WaitAsync(Patience));
        Assert.True(await later.WaitAsync(Patience));
        Assert.Equal(3, room.Taken);
    }

    [Fact]
    public async Task A_wait_that_runs_out_takes_nothing_and_lets_the_caller_behind_in()
    {
        var room = new WeightedFifoSemaphore(4);
        await room.WaitAsync(3, Patience, CancellationToken.None);
        var timedOut = room.WaitAsync(4, TimeSpan.FromMilliseconds(20), CancellationToken.None);
        var behind = room.WaitAsync(1, Patience, CancellationToken.None);
        Assert.False(behind.IsCompleted);

        Assert.False(await timedOut.WaitAsync(Patience));
        Assert.True(await behind.WaitAsync(Patience));
        Assert.Equal(4, room.Taken);
    }

    [Fact]
    public async Task A_cancelled_wait_takes_nothing_and_lets_the_caller_behind_in()
    {
        var room = new WeightedFifoSemaphore(4);
        await room.WaitAsync(3, Patience, CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var cancelled = room.WaitAsync(2, Patience, cancel.Token);
        var behind = room.WaitAsync(1, Patience, CancellationToken.None);

        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Patience));
        Assert.True(await behind.WaitAsync(Patience));
        Assert.Equal(4, room.Taken);
    }

    [Fact]
    public async Task Closing_fails_the_callers_in_line_and_refuses_later_ones()
    {
        var room = new WeightedFifoSemaphore(2);
        await room.WaitAsync(2, Patience, CancellationToken.None);
        var waiting = room.WaitAsync(1, Patience, CancellationToken.None);
        var error = new ObjectDisposedException("batcher");

        room.Close(error);

        Assert.Same(error, await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(Patience)));
        Assert.Throws<ObjectDisposedException>(() => { _ = room.WaitAsync(1, Patience, CancellationToken.None); });
        Assert.Equal(2, room.Taken);
    }

    [Fact]
    public void A_weight_that_could_never_be_taken_is_refused_at_once()
    {
        var room = new WeightedFifoSemaphore(2);

        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = room.WaitAsync(3, Patience, CancellationToken.None); });
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = room.WaitAsync(0, Patience, CancellationToken.None); });
        Assert.Throws<ArgumentOutOfRangeException>(() => new WeightedFifoSemaphore(0));
        Assert.Equal(0, room.Taken);
    }
}
