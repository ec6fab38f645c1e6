using EmbeddingCache.FunctionalTests.Infrastructure;

namespace EmbeddingCache.FunctionalTests;

/// <summary>The soak's judge itself: it must reject what the soak exists to catch, or the soak cannot fail.</summary>
public sealed class SoakLedgerTests
{
    private const string Target = "m/document";
    private static readonly byte[] Old = [1, 2, 3, 4];
    private static readonly byte[] New = [5, 6, 7, 8];

    [Fact]
    public void An_acknowledged_write_must_be_served_with_its_bytes()
    {
        var ledger = new SoakLedger();
        ledger.RecordWrite(Target, "a", Old, ledger.Tick(), ledger.Tick(), acknowledged: true);

        Assert.Null(ledger.Judge(Target, "a", Old, out _));
        Assert.Contains("missing", ledger.Judge(Target, "a", null, out _));
        Assert.Contains("phantom", ledger.Judge(Target, "a", New, out _));
        Assert.Contains("phantom", ledger.Judge(Target, "never-written", Old, out _));
        Assert.Null(ledger.Judge(Target, "never-written", null, out _));
    }

    [Fact]
    public void The_newest_acknowledged_write_wins_and_a_write_cut_by_a_kill_may_or_may_not_have_landed()
    {
        var ledger = new SoakLedger();
        ledger.RecordWrite(Target, "a", Old, ledger.Tick(), ledger.Tick(), acknowledged: true);
        ledger.RecordWrite(Target, "a", New, ledger.Tick(), ledger.Tick(), acknowledged: true);
        Assert.Contains("older write", ledger.Judge(Target, "a", Old, out _));
        Assert.Null(ledger.Judge(Target, "a", New, out _));

        byte[] cut = [9, 9, 9, 9];
        ledger.RecordWrite(Target, "a", cut, ledger.Tick(), ledger.Tick(), acknowledged: false);
        Assert.Null(ledger.Judge(Target, "a", New, out _));
        Assert.Null(ledger.Judge(Target, "a", cut, out _));
        Assert.NotNull(ledger.Judge(Target, "a", null, out _));
    }

    [Fact]
    public void Invalidate_drops_rows_acknowledged_before_it_keeps_rows_after_it_and_allows_either_for_a_race()
    {
        var ledger = new SoakLedger();
        ledger.RecordWrite(Target, "before", Old, ledger.Tick(), ledger.Tick(), acknowledged: true);
        long raceSent = ledger.Tick();
        long invalidateSent = ledger.Tick();
        long raceEnded = ledger.Tick();
        ledger.RecordInvalidation(Target, invalidateSent, ledger.Tick(), acknowledged: true);
        ledger.RecordWrite(Target, "racing", Old, raceSent, raceEnded, acknowledged: true);
        ledger.RecordWrite(Target, "after", New, ledger.Tick(), ledger.Tick(), acknowledged: true);

        Assert.Contains("Invalidate", ledger.Judge(Target, "before", Old, out _));
        Assert.Null(ledger.Judge(Target, "before", null, out bool gone));
        Assert.True(gone);
        Assert.Null(ledger.Judge(Target, "racing", Old, out _));
        Assert.Null(ledger.Judge(Target, "racing", null, out _));
        Assert.Null(ledger.Judge(Target, "after", New, out _));
        Assert.Contains("missing", ledger.Judge(Target, "after", null, out _));
        Assert.Null(ledger.Judge("other/document", "before", null, out _));
    }
}
