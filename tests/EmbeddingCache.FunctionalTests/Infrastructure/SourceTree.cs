namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>The checkout the tests were built from, for what a test reads or runs from the source tree (README, the embcache wrapper, the Python package, the npm test client).</summary>
public static class SourceTree
{
    /// <summary>The folder holding EmbeddingCache.sln, above the test's output directory.</summary>
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "EmbeddingCache.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException($"EmbeddingCache.sln not found above {AppContext.BaseDirectory}: this test reads the source tree");
    }
}
