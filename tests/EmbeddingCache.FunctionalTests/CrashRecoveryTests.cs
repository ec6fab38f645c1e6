using EmbeddingCache.FunctionalTests.Infrastructure;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// Invariant N2 against the real server: a crash soak (<see cref="CrashSoak"/>) of at least 50 kill -9 under mixed
/// Put/Embed/Get/Invalidate load from several clients. EMBCACHE_CRASH_KILLS raises the count for the long run,
/// EMBCACHE_CRASH_MINUTES bounds its duration (20 by default), EMBCACHE_CRASH_SEED replays another seed.
/// </summary>
public sealed class CrashRecoveryTests(ITestOutputHelper output) : ServerTest(output)
{
    private const int SuiteKills = 50;

    [Fact]
    public async Task Crash_soak_loses_nothing_acknowledged_and_serves_nothing_it_should_not()
    {
        var options = new CrashSoakOptions
        {
            Kills = Math.Max(SuiteKills, TestSettings.Int("EMBCACHE_CRASH_KILLS") ?? SuiteKills),
            Seed = TestSettings.Int("EMBCACHE_CRASH_SEED") ?? 7,
            TimeLimit = TimeSpan.FromMinutes(TestSettings.Int("EMBCACHE_CRASH_MINUTES") ?? 20),
        };
        var soak = new CrashSoak(Artifacts.Path, args => StartServerAsync(args), options);

        var report = await soak.RunAsync();

        string text = report.ToString();
        Output.WriteLine(text);
        if (await TestSettings.KeepLongRunReportAsync("crash-soak.txt", text, options.Kills > SuiteKills) is { } file)
        {
            Output.WriteLine($"report written to {file}");
        }
        Assert.True(report.Kills >= SuiteKills, $"only {report.Kills} kills within {options.TimeLimit}");
        Assert.True(report.PutRowsAcknowledged > report.Kills && report.EmbedRowsComputed > 0, "the load should have been acknowledged between kills");
        Assert.True(report.RowsPresentChecked > 0 && report.FileRowsChecked > 0);
    }
}
