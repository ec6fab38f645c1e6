namespace EmbeddingCache.Inference;

/// <summary>
/// Cuts length-sorted texts into batches. Every text in a batch is padded to the longest, so a batch of mixed
/// lengths wastes compute on padding, while many tiny batches pay ONNX Runtime's per-run overhead: the
/// planner picks the cuts that minimise padded tokens plus a per-batch overhead, within the token budget.
/// </summary>
internal static class BatchPlanner
{
    /// <summary>What one extra ONNX Runtime run costs, in padded tokens: it makes merging two close lengths pay off and two far ones not.</summary>
    internal const int BatchOverheadTokens = 64;

    /// <summary>
    /// Given token counts in ascending order, returns the size of the first batch of the cheapest plan for all
    /// of them: batches padded to their longest text, within <paramref name="tokenBudget"/> padded tokens and
    /// <paramref name="maxBatchSize"/> texts (a text alone always forms a batch).
    /// </summary>
    public static int NextBatchSize(ReadOnlySpan<int> ascendingLengths, int tokenBudget, int maxBatchSize)
    {
        int n = ascendingLengths.Length;
        if (n <= 1) return n;
        // cost[i]: cheapest plan for texts i..n-1; first[i]: the size of its first batch. Filled from the end.
        var cost = new long[n + 1];
        var first = new int[n + 1];
        for (int i = n - 1; i >= 0; i--)
        {
            long best = long.MaxValue;
            int bestSize = 1;
            for (int size = 1; size <= maxBatchSize && i + size <= n; size++)
            {
                long padded = (long)size * ascendingLengths[i + size - 1];
                if (size > 1 && padded > tokenBudget) break; // grows with size: no larger batch fits either
                long total = padded + BatchOverheadTokens + cost[i + size];
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
