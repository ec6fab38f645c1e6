namespace EmbeddingCache.Inference;

/// <summary>Cuts texts sorted by token count into batches that respect a padded-token budget.</summary>
internal static class BatchPlanner
{
    /// <summary>
    /// Given token counts in ascending order, returns the size of the first batch: as many texts as fit
    /// <paramref name="tokenBudget"/> once padded to the longest of them, at most <paramref name="maxBatchSize"/>, at least one.
    /// </summary>
    public static int NextBatchSize(ReadOnlySpan<int> ascendingLengths, int tokenBudget, int maxBatchSize)
    {
        var count = 1;
        while (count < ascendingLengths.Length && count < maxBatchSize && (long)(count + 1) * ascendingLengths[count] <= tokenBudget)
        {
            count++;
        }

        return count;
    }
}
