using EmbeddingCache.Inference;

namespace EmbeddingCache.Inference.Tests;

/// <summary>The batch plan: little padding, few runs, never over the budget.</summary>
public sealed class BatchPlannerTests
{
    [Fact]
    public void Short_texts_are_not_padded_to_a_long_one()
    {
        Assert.Equal(3, BatchPlanner.NextBatchSize([10, 11, 12, 200], tokenBudget: 16384, maxBatchSize: 64));
    }

    [Fact]
    public void Close_lengths_share_a_batch()
    {
        Assert.Equal(4, BatchPlanner.NextBatchSize([100, 105, 110, 120], tokenBudget: 16384, maxBatchSize: 64));
    }

    [Fact]
    public void Budget_and_batch_size_bound_every_batch()
    {
        Assert.Equal(4, BatchPlanner.NextBatchSize(Enumerable.Repeat(256, 10).ToArray(), tokenBudget: 1024, maxBatchSize: 64));
        Assert.Equal(8, BatchPlanner.NextBatchSize(Enumerable.Repeat(16, 100).ToArray(), tokenBudget: 16384, maxBatchSize: 8));
        Assert.Equal(1, BatchPlanner.NextBatchSize([5000], tokenBudget: 1024, maxBatchSize: 64));
    }

    [Fact]
    public void A_plan_of_a_realistic_mix_pads_far_less_than_one_batch()
    {
        var random = new Random(3);
        var lengths = Enumerable.Range(0, 64).Select(_ => random.Next(3) == 0 ? 256 : 8 + random.Next(40)).Order().ToArray();
        long padded = 0;
        for (int start = 0; start < lengths.Length;)
        {
            int size = BatchPlanner.NextBatchSize(lengths.AsSpan(start), tokenBudget: 16384, maxBatchSize: 64);
            padded += (long)size * lengths[start + size - 1];
            start += size;
        }
        long real = lengths.Sum();
        Assert.True(padded < real * 1.3, $"padded {padded} tokens for {real} real ones");
        Assert.True(64L * 256 > padded * 2);
    }
}
