using CsCheck;

namespace EmbeddingCache.Inference.Tests;

/// <summary>The batch plan, as pure code: little padding, few runs, never over the budget, every text once, shortest first.</summary>
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

    [Fact]
    public void Nothing_to_plan_makes_no_batch()
    {
        Assert.Empty(BatchPlanner.Plan([], tokenBudget: 16384, maxBatchSize: 64));
        Assert.Equal(0, BatchPlanner.NextBatchSize([], tokenBudget: 16384, maxBatchSize: 64));
    }

    [Fact]
    public void A_plan_sorts_texts_by_length_and_names_them_by_their_index()
    {
        var batches = BatchPlanner.Plan([200, 10, 12, 11], tokenBudget: 16384, maxBatchSize: 64);

        Assert.Equal(new[] { new[] { 1, 3, 2 }, new[] { 0 } }, batches);
    }

    [Fact]
    public void Texts_of_equal_length_keep_their_given_order()
    {
        var batches = BatchPlanner.Plan([5, 5, 5, 5, 5], tokenBudget: 16384, maxBatchSize: 2);

        Assert.Equal(Enumerable.Range(0, 5), batches.SelectMany(batch => batch));
        Assert.All(batches, batch => Assert.InRange(batch.Length, 1, 2));
    }

    [Fact]
    public void A_text_over_the_budget_runs_alone()
    {
        var batches = BatchPlanner.Plan([30, 5000, 40], tokenBudget: 1024, maxBatchSize: 64);

        Assert.Equal(new[] { new[] { 0, 2 }, new[] { 1 } }, batches);
    }

    [Fact]
    public void Every_plan_holds_each_text_once_shortest_first_within_its_bounds()
    {
        Gen.Select(Gen.Int[1, 600].Array[0, 150], Gen.Int[64, 8192], Gen.Int[1, 70]).Sample((lengths, tokenBudget, maxBatchSize) =>
        {
            var batches = BatchPlanner.Plan(lengths, tokenBudget, maxBatchSize);

            var order = batches.SelectMany(batch => batch).ToArray();
            Assert.Equal(Enumerable.Range(0, lengths.Length), order.Order());
            for (var i = 1; i < order.Length; i++)
            {
                // By length, equal lengths by index.
                Assert.True(lengths[order[i - 1]] < lengths[order[i]] || (lengths[order[i - 1]] == lengths[order[i]] && order[i - 1] < order[i]));
            }

            foreach (var batch in batches)
            {
                Assert.InRange(batch.Length, 1, maxBatchSize);
                Assert.True(batch.Length == 1 || (long)batch.Length * lengths[batch[^1]] <= tokenBudget);
            }
        });
    }

    [Fact]
    public void A_plan_cuts_as_next_batch_size_does_over_the_sorted_lengths()
    {
        var random = new Random(7);
        var lengths = Enumerable.Range(0, 300).Select(_ => 3 + random.Next(300)).ToArray();
        var ascending = lengths.Order().ToArray();

        var sizes = BatchPlanner.Plan(lengths, tokenBudget: 4096, maxBatchSize: 32).Select(batch => batch.Length).ToArray();

        var expected = new List<int>();
        for (var start = 0; start < ascending.Length; start += expected[^1])
        {
            expected.Add(BatchPlanner.NextBatchSize(ascending.AsSpan(start), tokenBudget: 4096, maxBatchSize: 32));
        }

        Assert.Equal(expected, sizes);
    }

    [Fact]
    public void One_worker_shares_the_whole_budget()
    {
        Assert.Equal(16384, BatchPlanner.SharedTokenBudget([10_000, 10_000], workers: 1, tokenBudget: 16384));
        Assert.Equal(1000, BatchPlanner.SharedTokenBudget([400, 600], workers: 1, tokenBudget: 16384));
    }

    [Fact]
    public void Several_workers_get_a_share_each_rounded_up_and_never_over_the_budget()
    {
        Assert.Equal(334, BatchPlanner.SharedTokenBudget([400, 600, 1], workers: 3, tokenBudget: 16384));
        Assert.Equal(1024, BatchPlanner.SharedTokenBudget([10_000, 10_000], workers: 2, tokenBudget: 1024));
    }

    [Fact]
    public void A_plan_too_small_for_a_second_run_is_not_split_between_workers()
    {
        // 2 x BatchOverheadTokens: below that a second run costs more than it saves.
        Assert.Equal(2 * BatchPlanner.BatchOverheadTokens, BatchPlanner.SharedTokenBudget([20, 30], workers: 2, tokenBudget: 16384));
        Assert.Equal(2 * BatchPlanner.BatchOverheadTokens, BatchPlanner.SharedTokenBudget([], workers: 4, tokenBudget: 16384));
    }
}
