namespace EmbeddingCache.Inference;

/// <summary>
/// Sorts texts by token count and cuts them into batches. Every text in a batch is padded to the longest, so a batch
/// of mixed lengths wastes compute on padding, while many tiny batches pay ONNX Runtime's per-run overhead: the
/// planner picks the cuts that minimise padded tokens plus a per-batch overhead, within the token budget. Pure code:
/// <see cref="TextEncoder.Encode"/> and the <see cref="EncodingBatcher"/>'s workers plan with it alike.
/// </summary>
internal static class BatchPlanner
{
    /// <summary>What one extra ONNX Runtime run costs, in padded tokens: it makes merging two close lengths pay off and two far ones not.</summary>
    internal const int BatchOverheadTokens = 64;

    /// <summary>
    /// The batches for texts of token counts <paramref name="lengths"/>, in any order: each batch the indexes of its
    /// texts, shortest first, and the batches shortest first. Texts of equal length keep their given order, so a
    /// caller that lists texts by arrival plans the older ones first.
    /// </summary>
    public static int[][] Plan(ReadOnlySpan<int> lengths, int tokenBudget, int maxBatchSize)
    {
        var order = new int[lengths.Length];
        var sorted = lengths.ToArray();
        for (var i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        // Array.Sort is not stable: sorting by (length, index) keeps equal lengths in their given order.
        Array.Sort(order, (a, b) => sorted[a] != sorted[b] ? sorted[a].CompareTo(sorted[b]) : a.CompareTo(b));
        for (var i = 0; i < order.Length; i++)
        {
            sorted[i] = lengths[order[i]];
        }

        var batches = new List<int[]>();
        for (var start = 0; start < order.Length;)
        {
            var size = NextBatchSize(sorted.AsSpan(start), tokenBudget, maxBatchSize);
            batches.Add(order[start..(start + size)]);
            start += size;
        }

        return [.. batches];
    }

    /// <summary>
    /// The token budget for one batch of a plan that <paramref name="workers"/> workers share. Cut for padding alone,
    /// a plan can leave one long batch running while the other workers idle: with several workers no batch gets more
    /// than a worker's share of the plan's tokens, unless the plan is too small to be worth a second run (by the
    /// planner's own cost of a run). Never more than <paramref name="tokenBudget"/>.
    /// </summary>
    public static int SharedTokenBudget(ReadOnlySpan<int> lengths, int workers, int tokenBudget)
    {
        long tokens = 0;
        foreach (var length in lengths)
        {
            tokens += length;
        }

        var share = (tokens + workers - 1) / workers;
        return (int)Math.Min(tokenBudget, Math.Max(share, 2 * BatchOverheadTokens));
    }

    /// <summary>
    /// Given token counts in ascending order, returns the size of the first batch of the cheapest plan for all
    /// of them: batches padded to their longest text, within <paramref name="tokenBudget"/> padded tokens and
    /// <paramref name="maxBatchSize"/> texts (a text alone always forms a batch).
    /// </summary>
    public static int NextBatchSize(ReadOnlySpan<int> ascendingLengths, int tokenBudget, int maxBatchSize)
    {
        var n = ascendingLengths.Length;
        if (n <= 1)
        {
            return n;
        }

        // cost[i]: cheapest plan for texts i..n-1; first[i]: the size of its first batch. Filled from the end.
        var cost = new long[n + 1];
        var first = new int[n + 1];
        for (var i = n - 1; i >= 0; i--)
        {
            var best = long.MaxValue;
            var bestSize = 1;
            for (var size = 1; size <= maxBatchSize && i + size <= n; size++)
            {
                var padded = (long)size * ascendingLengths[i + size - 1];
                if (size > 1 && padded > tokenBudget)
                {
                    break; // grows with size: no larger batch fits either
                }

                var total = padded + BatchOverheadTokens + cost[i + size];
                if (total <= best)
                {
                    best = total;
                    bestSize = size;
                }
            }

            cost[i] = best;
            first[i] = bestSize;
        }

        return first[0];
    }
}
