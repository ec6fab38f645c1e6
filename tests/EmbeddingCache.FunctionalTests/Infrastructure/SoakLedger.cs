namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>
/// The soak clients' own record of what they sent and what the server acknowledged, on one logical clock
/// shared by every client, and the judgement of what the server may serve for a row after any crash.
/// </summary>
/// <remarks>
/// Every write and invalidation spans [Sent, Ended] on the clock. Acknowledged ones certainly took effect;
/// ones whose call died with the server may or may not have. A row may end in the state left by operation X
/// (X's vector for a write, nothing for an invalidation, nothing for "never written") only when X may have
/// taken effect and no acknowledged operation on the row began after X ended. So a row acknowledged before
/// an acknowledged Invalidate must be gone, one acknowledged after it must be there, and one racing it may be
/// either; the newest acknowledged write of a row wins over older ones.
/// </remarks>
public sealed class SoakLedger
{
    private readonly Lock sync = new();
    private readonly Dictionary<(string Target, string Row), List<Operation>> writes = [];
    private readonly Dictionary<string, List<Operation>> invalidations = [];
    private long clock;

    /// <summary>A tick of the logical clock; later calls return larger values.</summary>
    public long Tick() => Interlocked.Increment(ref clock);

    /// <summary>
    /// Records a write of <paramref name="row"/> in <paramref name="target"/> (model/kind). <paramref name="vector"/> is
    /// null when the client never learnt what was written (an Embed that died with the server).
    /// </summary>
    public void RecordWrite(string target, string row, byte[]? vector, long sent, long ended, bool acknowledged)
    {
        lock (sync)
        {
            if (!writes.TryGetValue((target, row), out var list)) writes[(target, row)] = list = [];
            list.Add(new Operation(vector, sent, ended, acknowledged));
        }
    }

    public void RecordInvalidation(string target, long sent, long ended, bool acknowledged)
    {
        lock (sync)
        {
            if (!invalidations.TryGetValue(target, out var list)) invalidations[target] = list = [];
            list.Add(new Operation(null, sent, ended, acknowledged));
        }
    }

    /// <summary>Every row ever written to <paramref name="target"/>, acknowledged or not.</summary>
    public IReadOnlyList<string> Rows(string target)
    {
        lock (sync) return [.. writes.Keys.Where(k => k.Target == target).Select(k => k.Row)];
    }

    /// <summary>How many writes of the row were sent (an upper bound on its rows in one generation of files).</summary>
    public int WritesSent(string target, string row)
    {
        lock (sync) return writes.TryGetValue((target, row), out var list) ? list.Count : 0;
    }

    /// <summary>
    /// True when <paramref name="vector"/> is one the clients ever sent (or may have been written unseen) for the row:
    /// a found row that fails this is a phantom or a mix-up of rows, whatever the timing.
    /// </summary>
    public bool WasEverSent(string target, string row, ReadOnlySpan<byte> vector)
    {
        lock (sync)
        {
            if (!writes.TryGetValue((target, row), out var list)) return false;
            foreach (var write in list)
            {
                if (write.Vector is null || vector.SequenceEqual(write.Vector)) return true;
            }
            return false;
        }
    }

    /// <summary>
    /// Judges what the server serves for a row once no call is in flight: null when its state is allowed,
    /// else why not. <paramref name="served"/> is null when the row was reported missing.
    /// </summary>
    public string? Judge(string target, string row, byte[]? served, out bool goneByInvalidate)
    {
        lock (sync)
        {
            var rowWrites = writes.TryGetValue((target, row), out var w) ? w : [];
            var targetInvalidations = invalidations.TryGetValue(target, out var i) ? i : [];
            long lastAcknowledgedStart = long.MinValue;
            foreach (var op in rowWrites.Concat(targetInvalidations))
            {
                if (op.Acknowledged) lastAcknowledgedStart = Math.Max(lastAcknowledgedStart, op.Sent);
            }
            bool MayBeLast(Operation op) => op.Ended > lastAcknowledgedStart;

            bool neverWrittenAllowed = lastAcknowledgedStart == long.MinValue;
            bool invalidatedAllowed = targetInvalidations.Any(MayBeLast);
            goneByInvalidate = served is null && !neverWrittenAllowed && invalidatedAllowed;
            var allowedWrites = rowWrites.Where(MayBeLast).ToList();
            if (served is null)
            {
                if (neverWrittenAllowed || invalidatedAllowed) return null;
                return $"{target} '{row}' is missing, but {rowWrites.Count(x => x.Acknowledged)} write(s) of it were acknowledged " +
                       $"and no invalidation may have come after the newest";
            }
            if (allowedWrites.Any(x => x.Vector is null || served.AsSpan().SequenceEqual(x.Vector)))
            {
                return null;
            }
            bool phantom = !rowWrites.Any(x => x.Vector is null || served.AsSpan().SequenceEqual(x.Vector));
            if (phantom) return $"{target} '{row}' serves a vector no client ever sent for it (phantom)";
            if (allowedWrites.Count == 0) return $"{target} '{row}' is served although an acknowledged Invalidate came after every write of it";
            return $"{target} '{row}' serves an older write although a newer one was acknowledged after it (stale or duplicated row)";
        }
    }

    /// <summary>Counts of acknowledged and unknown-outcome operations, for the report.</summary>
    public (int AcknowledgedWrites, int UnknownWrites, int AcknowledgedInvalidations, int UnknownInvalidations) Counts(string target)
    {
        lock (sync)
        {
            var targetWrites = writes.Where(kv => kv.Key.Target == target).SelectMany(kv => kv.Value).ToList();
            var targetInvalidations = invalidations.TryGetValue(target, out var i) ? i : [];
            return (targetWrites.Count(x => x.Acknowledged), targetWrites.Count(x => !x.Acknowledged),
                targetInvalidations.Count(x => x.Acknowledged), targetInvalidations.Count(x => !x.Acknowledged));
        }
    }

    private sealed record Operation(byte[]? Vector, long Sent, long Ended, bool Acknowledged);
}
