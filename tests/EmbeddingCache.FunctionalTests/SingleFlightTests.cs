using EmbeddingCache.Engine;

namespace EmbeddingCache.FunctionalTests;

/// <summary>The engine's de-duplication of concurrent computations, alone: one owner per key, waiters share its task.</summary>
public sealed class SingleFlightTests
{
    [Fact]
    public void The_first_to_join_a_key_owns_it_and_later_ones_share_its_task()
    {
        var flights = new SingleFlight<string, int>();
        var first = new TaskCompletionSource<int>();
        var second = new TaskCompletionSource<int>();

        Assert.Same(first.Task, flights.Join("a", first));
        Assert.Same(first.Task, flights.Join("a", second));
        Assert.Same(second.Task, flights.Join("b", second));
    }

    [Fact]
    public void A_landed_flight_is_not_joined_again()
    {
        var flights = new SingleFlight<string, int>();
        var first = new TaskCompletionSource<int>();
        var next = new TaskCompletionSource<int>();
        flights.Join("a", first);
        first.SetResult(1);

        flights.Land("a", first.Task);

        Assert.Same(next.Task, flights.Join("a", next));
    }

    [Fact]
    public void A_cancelled_flight_not_yet_landed_is_taken_over_and_its_late_landing_leaves_the_new_one()
    {
        var flights = new SingleFlight<string, int>();
        var cancelled = new TaskCompletionSource<int>();
        var successor = new TaskCompletionSource<int>();
        var waiter = new TaskCompletionSource<int>();
        flights.Join("a", cancelled);
        cancelled.SetCanceled();

        Assert.Same(successor.Task, flights.Join("a", successor));
        flights.Land("a", cancelled.Task);

        Assert.Same(successor.Task, flights.Join("a", waiter));
    }
}
