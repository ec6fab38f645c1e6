using System.Diagnostics;

namespace EmbeddingCache.Testing;

/// <summary>
/// Waits for something another thread or process brings about (a queue reaching a state, a log line, a server
/// answering), shared by the test projects so that every wait has a deadline and a failure that says what it waited for.
/// </summary>
public static class Wait
{
    /// <summary>Long enough for a loaded 2-core machine; a condition that holds at all holds far sooner.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(10);

    /// <summary>Returns once <paramref name="condition"/> holds; throws <see cref="TimeoutException"/> naming <paramref name="awaited"/> otherwise.</summary>
    public static Task UntilAsync(Func<bool> condition, string awaited, TimeSpan? timeout = null) =>
        UntilAsync(() => Task.FromResult(condition()), awaited, timeout);

    /// <summary>As <see cref="UntilAsync(Func{bool}, string, TimeSpan?)"/>, for a condition that has to ask (a call, a file).</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, string awaited, TimeSpan? timeout = null)
    {
        var limit = timeout ?? DefaultTimeout;
        var waited = Stopwatch.StartNew();
        while (!await condition())
        {
            if (waited.Elapsed > limit)
            {
                throw new TimeoutException($"Waited {limit.TotalSeconds:0.#} s for {awaited}, in vain.");
            }

            await Task.Delay(PollInterval);
        }
    }
}
