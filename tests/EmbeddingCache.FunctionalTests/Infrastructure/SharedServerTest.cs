using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>
/// Base of test classes some of whose tests use the shared <see cref="InProcessServer"/> (through
/// <see cref="UseSharedServer"/>) while the others start real processes as every <see cref="ServerTest"/> does.
/// Each such class is marked <c>[Collection(SharedServerCollection.Name)]</c> (xunit reads it off the class itself).
/// </summary>
public abstract class SharedServerTest(InProcessServer shared, ITestOutputHelper output) : ServerTest(output)
{
    private bool usedShared;

    /// <summary>The shared server, its log and error lines counted from this test on.</summary>
    protected InProcessServer UseSharedServer()
    {
        shared.BeginTest();
        usedShared = true;
        return shared;
    }

    public override async Task DisposeAsync()
    {
        if (usedShared) Output.WriteLine($"--- shared in-process server log during this test ---\n{shared.Log}");
        await base.DisposeAsync();
    }
}

/// <summary>The test classes whose tests share one <see cref="InProcessServer"/>.</summary>
[CollectionDefinition(Name)]
public sealed class SharedServerCollection : ICollectionFixture<InProcessServer>
{
    public const string Name = "shared in-process server";
}
