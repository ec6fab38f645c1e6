using EmbeddingCache.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace EmbeddingCache.Inference.Tests;

[Collection(BuiltInModelsCollection.Name)]
public sealed class EncodingBatcherTests(BuiltInModelsFixture models)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private TextEncoder MiniLM => models.Encoders[BuiltInModels.MiniLM];

    [Fact]
    public async Task Concurrent_callers_get_the_rows_of_a_direct_encode_in_input_order()
    {
        var encoder = MiniLM;
        var dims = encoder.Dims;
        var all = ReferenceData.Texts.Select(t => t.Text).ToArray();

        // Eight callers with overlapping, differently ordered and repeated texts, so batches mix callers.
        var requests = Enumerable.Range(0, 8)
            .Select(caller => Enumerable.Range(0, 5 + caller * 3).Select(i => all[(i * (caller + 1) + caller) % all.Length]).ToArray())
            .ToArray();
        var expected = requests.Select(texts =>
        {
            var rows = new float[texts.Length * dims];
            for (var i = 0; i < texts.Length; i++)
            {
                encoder.Encode([texts[i]], rows.AsSpan(i * dims, dims));
            }

            return rows;
        }).ToArray();

        await using var batcher = new EncodingBatcher(encoder, new EncoderOptions { TokenBudget = 4096, MaxBatchSize = 16, MaxBatchDelay = TimeSpan.FromMilliseconds(20) }, NullLoggerFactory.Instance);
        var outputs = requests.Select(texts => new float[texts.Length * dims]).ToArray();
        using var start = new ManualResetEventSlim();
        var calls = requests.Select((texts, caller) => Task.Run(async () =>
        {
            start.Wait();
            await batcher.EncodeAsync(texts, outputs[caller], CancellationToken.None);
        })).ToArray();
        start.Set();
        await Task.WhenAll(calls).WaitAsync(Patience);

        for (var caller = 0; caller < requests.Length; caller++)
        {
            for (var i = 0; i < expected[caller].Length; i++)
            {
                Assert.True(Math.Abs(expected[caller][i] - outputs[caller][i]) <= 1e-6, $"caller {caller} float {i}: {expected[caller][i]} vs {outputs[caller][i]}");
            }
        }

        Assert.Equal(requests.Sum(r => r.Length), batcher.TextsEncoded);
        Assert.True(batcher.BatchesRun < requests.Sum(r => r.Length), "texts of different callers should share batches");
        Assert.Equal(0, batcher.QueuedTexts);
    }

    [Fact]
    public async Task Cancelling_drops_texts_that_have_not_started_and_leaves_the_output_alone()
    {
        var dims = MiniLM.Dims;
        var options = new EncoderOptions { MaxBatchDelay = TimeSpan.Zero };
        await using var batcher = new EncodingBatcher(MiniLM, options, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;

        using var cancel = new CancellationTokenSource();
        var cancelledOutput = new float[3 * dims];
        Array.Fill(cancelledOutput, float.NaN);
        var cancelled = batcher.EncodeAsync(["one", "two", "three"], cancelledOutput, cancel.Token);
        var keptOutput = new float[2 * dims];
        var kept = batcher.EncodeAsync(["four", "five"], keptOutput, CancellationToken.None);

        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Patience));
        gate.Set();
        await kept.WaitAsync(Patience);

        Assert.Equal(2, batcher.TextsEncoded);
        Assert.Equal(3, batcher.TextsDropped);
        Assert.All(cancelledOutput, value => Assert.True(float.IsNaN(value)));
        Assert.Contains(keptOutput, value => value != 0);
        Assert.Equal(0, batcher.QueuedTexts);
    }

    [Fact]
    public async Task When_every_queued_text_was_cancelled_the_batcher_runs_on_and_serves_the_next_caller()
    {
        var dims = MiniLM.Dims;
        await using var batcher = new EncodingBatcher(MiniLM, new EncoderOptions { MaxBatchDelay = TimeSpan.Zero }, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;

        // The first call's batch is taken and held at the gate; the second call queues behind it and is cancelled,
        // so the next plan the batcher makes holds only dropped texts (a warm run interrupted with Ctrl+C does this).
        var running = batcher.EncodeAsync(["one"], new float[dims], CancellationToken.None);
        await Wait.UntilAsync(() => batcher.QueuedTexts == 1 && batcher.UnplannedTexts == 0, "the first call's batch to be taken and held at the gate");
        using var cancel = new CancellationTokenSource();
        var cancelled = batcher.EncodeAsync(["two", "three"], new float[2 * dims], cancel.Token);
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Patience));
        gate.Set();
        await running.WaitAsync(Patience);
        await Wait.UntilAsync(() => batcher.TextsDropped == 2, "the cancelled call's two texts to be dropped");

        var next = new float[dims];
        await batcher.EncodeAsync(["four"], next, CancellationToken.None).WaitAsync(Patience);
        Assert.Contains(next, value => value != 0);
        Assert.Equal(2, batcher.TextsEncoded);
    }

    [Fact]
    public async Task An_already_cancelled_token_queues_nothing()
    {
        await using var batcher = new EncodingBatcher(MiniLM, new EncoderOptions(), NullLoggerFactory.Instance);
        var call = batcher.EncodeAsync(["x"], new float[MiniLM.Dims], new CancellationToken(canceled: true));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
        Assert.Equal(0, batcher.QueuedTexts);
    }

    [Fact]
    public async Task A_full_queue_refuses_new_work_once_the_wait_limit_passes_and_admits_again_once_drained()
    {
        var dims = MiniLM.Dims;
        var options = new EncoderOptions { MaxQueuedTexts = 10, MaxQueueWait = TimeSpan.FromMilliseconds(50) };
        await using var batcher = new EncodingBatcher(MiniLM, options, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;

        var first = batcher.EncodeAsync(Enumerable.Repeat("queued", 8).ToArray(), new float[8 * dims], CancellationToken.None);
        // The gate holds the queue full for longer than the wait limit, whatever the machine's speed.
        var refused = await Assert.ThrowsAsync<EncoderSaturatedException>(() => batcher.EncodeAsync(["a", "b", "c"], new float[3 * dims], CancellationToken.None));
        Assert.Contains("retry after a pause, or send fewer texts at once", refused.Message);
        Assert.Contains("limit 10", refused.Message);
        var second = batcher.EncodeAsync(["a", "b"], new float[2 * dims], CancellationToken.None);
        Assert.Equal(10, batcher.QueuedTexts);

        gate.Set();
        await Task.WhenAll(first, second).WaitAsync(Patience);
        Assert.Equal(0, batcher.QueuedTexts);
        await batcher.EncodeAsync(["a", "b", "c"], new float[3 * dims], CancellationToken.None).WaitAsync(Patience);
    }

    [Fact]
    public async Task New_work_waits_for_room_in_a_full_queue_and_runs_once_there_is_some()
    {
        var dims = MiniLM.Dims;
        var options = new EncoderOptions { MaxQueuedTexts = 4, MaxQueueWait = Patience };
        await using var batcher = new EncodingBatcher(MiniLM, options, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;

        var first = batcher.EncodeAsync(["one", "two", "three"], new float[3 * dims], CancellationToken.None);
        var waiting = batcher.EncodeTimedAsync(["four", "five"], new float[2 * dims], CancellationToken.None);
        // A later call that would fit must not overtake the one already waiting.
        var later = batcher.EncodeAsync(["six"], new float[dims], CancellationToken.None);
        Assert.False(waiting.IsCompleted);
        Assert.False(later.IsCompleted);
        Assert.Equal(3, batcher.QueuedTexts);

        gate.Set();
        var timings = await waiting.WaitAsync(Patience);
        await Task.WhenAll(first, later).WaitAsync(Patience);
        Assert.Equal(6, batcher.TextsEncoded);
        Assert.True(timings.Queue > TimeSpan.Zero);
        Assert.Equal(0, batcher.QueuedTexts);
    }

    [Fact]
    public async Task Cancelling_while_waiting_for_room_queues_nothing_and_lets_the_next_caller_in()
    {
        var dims = MiniLM.Dims;
        var options = new EncoderOptions { MaxQueuedTexts = 4, MaxQueueWait = Patience };
        await using var batcher = new EncodingBatcher(MiniLM, options, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;

        var first = batcher.EncodeAsync(["one", "two", "three"], new float[3 * dims], CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var cancelled = batcher.EncodeAsync(["four", "five"], new float[2 * dims], cancel.Token);
        var behind = batcher.EncodeAsync(["six"], new float[dims], CancellationToken.None);
        Assert.Equal(3, batcher.QueuedTexts);

        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Patience));
        // The caller that waited behind the cancelled one fits now, before any batch ran.
        await Wait.UntilAsync(() => batcher.QueuedTexts == 4, "the caller behind the cancelled one to be admitted (4 texts queued)");

        gate.Set();
        await Task.WhenAll(first, behind).WaitAsync(Patience);
        Assert.Equal(4, batcher.TextsEncoded);
        Assert.Equal(0, batcher.TextsDropped);
        Assert.Equal(0, batcher.QueuedTexts);
    }

    [Fact]
    public async Task A_call_larger_than_the_queue_is_refused_at_once_with_the_limit()
    {
        var options = new EncoderOptions { MaxQueuedTexts = 2, MaxQueueWait = Patience };
        await using var batcher = new EncodingBatcher(MiniLM, options, NullLoggerFactory.Instance);
        var refused = await Assert.ThrowsAsync<EncoderSaturatedException>(() => batcher.EncodeAsync(["a", "b", "c"], new float[3 * MiniLM.Dims], CancellationToken.None));
        Assert.Contains("send at most 2 texts per call", refused.Message);
        Assert.Equal(0, batcher.QueuedTexts);
    }

    [Fact]
    public async Task Batches_respect_the_token_budget_and_sort_by_length()
    {
        var encoder = MiniLM;
        var dims = encoder.Dims;
        var texts = ReferenceData.Texts.Select(t => t.Text).ToArray();
        var options = new EncoderOptions { TokenBudget = 1024, MaxBatchSize = 64, ConcurrentBatches = 1 };
        await using var batcher = new EncodingBatcher(encoder, options, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;
        var paddedBefore = encoder.PaddedTokensEncoded;
        var realBefore = encoder.TokensEncoded;

        var call = batcher.EncodeAsync(texts, new float[texts.Length * dims], CancellationToken.None);
        gate.Set();
        await call.WaitAsync(Patience);

        // The batcher runs exactly the planner's batches over the length-sorted texts, none over the budget.
        var lengths = texts.Select(encoder.CountTokens).Order().ToArray();
        var expectedBatches = 0;
        for (var start = 0; start < lengths.Length; expectedBatches++)
        {
            var size = BatchPlanner.NextBatchSize(lengths.AsSpan(start), options.TokenBudget, options.MaxBatchSize);
            Assert.True(size == 1 || size * lengths[start + size - 1] <= options.TokenBudget);
            start += size;
        }

        Assert.Equal(expectedBatches, batcher.BatchesRun);
        Assert.Equal(lengths.Sum(), encoder.TokensEncoded - realBefore);
        Assert.True(encoder.PaddedTokensEncoded - paddedBefore < 2 * lengths.Sum(), "length sorting should keep padding well under the real tokens");
    }

    [Fact]
    public async Task With_two_workers_no_batch_holds_more_than_half_of_the_plans_tokens()
    {
        var encoder = MiniLM;
        var texts = ReferenceData.Texts.Select(t => t.Text).ToArray();
        var options = new EncoderOptions { TokenBudget = 1 << 20, MaxBatchSize = 64, ConcurrentBatches = 2 };
        await using var batcher = new EncodingBatcher(encoder, options, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;

        var call = batcher.EncodeAsync(texts, new float[texts.Length * encoder.Dims], CancellationToken.None);
        gate.Set();
        await call.WaitAsync(Patience);

        // Cut for padding alone under this budget, the texts make fewer batches than the planner makes within half their tokens.
        var lengths = texts.Select(encoder.CountTokens).Order().ToArray();
        var half = (lengths.Sum() + 1) / 2;
        Assert.Equal(CountBatches(lengths, half, options.MaxBatchSize), batcher.BatchesRun);
        Assert.True(CountBatches(lengths, options.TokenBudget, options.MaxBatchSize) < batcher.BatchesRun);
    }

    private static int CountBatches(int[] ascendingLengths, int tokenBudget, int maxBatchSize)
    {
        var batches = 0;
        for (var start = 0; start < ascendingLengths.Length; batches++)
        {
            start += BatchPlanner.NextBatchSize(ascendingLengths.AsSpan(start), tokenBudget, maxBatchSize);
        }

        return batches;
    }

    [Fact]
    public async Task Texts_arriving_while_a_batch_runs_are_planned_with_the_texts_still_waiting()
    {
        var dims = MiniLM.Dims;
        // One worker, so that the short text's batch is still planned (not taken by a second worker) when the late text arrives.
        var options = new EncoderOptions { MaxBatchDelay = TimeSpan.Zero, ConcurrentBatches = 1 };
        await using var batcher = new EncodingBatcher(MiniLM, options, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;
        var longText = string.Concat(Enumerable.Repeat("word ", 200));

        // A short and a long text are planned apart; the worker takes the larger batch, the long text's, and holds it
        // at the gate while the short text's batch stays planned.
        var first = batcher.EncodeAsync(["short", longText], new float[2 * dims], CancellationToken.None);
        await Wait.UntilAsync(() => batcher.QueuedTexts == 2 && batcher.PlannedBatches == 1, "the long text's batch to be taken while the short text's stays planned");
        var late = batcher.EncodeAsync(["tiny"], new float[dims], CancellationToken.None);
        gate.Set();
        await Task.WhenAll(first, late).WaitAsync(Patience);

        // The late short text shared the first call's short text's batch instead of running alone after it.
        Assert.Equal(3, batcher.TextsEncoded);
        Assert.Equal(2, batcher.BatchesRun);
    }

    [Fact]
    public async Task Two_workers_take_two_batches_at_once_and_each_caller_gets_its_own_rows()
    {
        var encoder = MiniLM;
        var dims = encoder.Dims;
        var options = new EncoderOptions { MaxBatchDelay = TimeSpan.Zero, ConcurrentBatches = 2 };
        await using var batcher = new EncodingBatcher(encoder, options, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;
        var longText = string.Concat(Enumerable.Repeat("word ", 200));
        string[] texts = ["short", longText];

        // Planned apart (their lengths differ too much to share padding), and both taken while the gate holds them:
        // one worker alone would leave the second batch in the plan.
        var output = new float[2 * dims];
        var call = batcher.EncodeAsync(texts, output, CancellationToken.None);
        await Wait.UntilAsync(() => batcher.QueuedTexts == 2 && batcher.UnplannedTexts == 0 && batcher.PlannedBatches == 0, "both batches to be taken by the two workers");
        Assert.False(call.IsCompleted);
        gate.Set();
        await call.WaitAsync(Patience);

        Assert.Equal(2, batcher.BatchesRun);
        var expected = new float[2 * dims];
        encoder.Encode(texts, expected);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - output[i]) <= 1e-6, $"float {i}: {expected[i]} vs {output[i]}");
        }
    }

    [Fact]
    public async Task Disposing_fails_texts_that_have_not_started()
    {
        var dims = MiniLM.Dims;
        // One worker: the first call's batch is taken and held at the gate, the second call's texts stay queued behind it.
        var options = new EncoderOptions { MaxBatchDelay = TimeSpan.Zero, ConcurrentBatches = 1 };
        var batcher = new EncodingBatcher(MiniLM, options, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;
        var heldOutput = new float[2 * dims];
        Array.Fill(heldOutput, float.NaN);
        var held = batcher.EncodeAsync(["x", "y"], heldOutput, CancellationToken.None);
        await Wait.UntilAsync(() => batcher.UnplannedTexts == 0 && batcher.PlannedBatches == 0, "the first call's batch to be taken and held at the gate");
        var queuedOutput = new float[dims];
        Array.Fill(queuedOutput, float.NaN);
        var queued = batcher.EncodeAsync(["z"], queuedOutput, CancellationToken.None);
        Assert.Equal(3, batcher.QueuedTexts);

        // Disposing marks the batcher stopped before it returns its task; only then may the held batch pass the gate.
        var disposing = batcher.DisposeAsync();
        gate.Set();
        await disposing.AsTask().WaitAsync(Patience);

        await Assert.ThrowsAsync<ObjectDisposedException>(() => held.WaitAsync(Patience));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => queued.WaitAsync(Patience));
        Assert.Equal(0, batcher.TextsEncoded);
        Assert.Equal(0, batcher.BatchesRun);
        Assert.Equal(3, batcher.TextsDropped);
        Assert.Equal(0, batcher.QueuedTexts);
        Assert.All(heldOutput, value => Assert.True(float.IsNaN(value)));
        Assert.All(queuedOutput, value => Assert.True(float.IsNaN(value)));
        Assert.Throws<ObjectDisposedException>(() => { _ = batcher.EncodeAsync(["z"], new float[dims], CancellationToken.None); });
    }

    [Fact]
    public async Task Timings_say_how_long_a_call_waited_and_how_many_batches_carried_it()
    {
        await using var batcher = new EncodingBatcher(MiniLM, new EncoderOptions { MaxBatchDelay = TimeSpan.Zero }, NullLoggerFactory.Instance);
        using var gate = new ManualResetEventSlim(initialState: false);
        batcher.BatchGate = gate;
        var call = batcher.EncodeTimedAsync(["one", "two", "three"], new float[3 * MiniLM.Dims], CancellationToken.None);

        // The batch cannot start before the gate opens, so the queue time is at least this wait.
        var held = TimeSpan.FromMilliseconds(100);
        await Task.Delay(held);
        gate.Set();
        var timings = await call.WaitAsync(Patience);

        Assert.True(timings.Queue >= held - TimeSpan.FromMilliseconds(5), $"queue {timings.Queue}");
        Assert.True(timings.Inference > TimeSpan.Zero);
        Assert.True(timings.Tokenize > TimeSpan.Zero);
        Assert.Equal(1, timings.Batches);
    }

    [Fact]
    public async Task A_too_small_output_is_rejected_before_queueing()
    {
        await using var batcher = new EncodingBatcher(MiniLM, new EncoderOptions(), NullLoggerFactory.Instance);
        Assert.Throws<ArgumentException>(() => { _ = batcher.EncodeAsync(["x", "y"], new float[MiniLM.Dims], CancellationToken.None); });
        Assert.Equal(0, batcher.QueuedTexts);
    }
}
