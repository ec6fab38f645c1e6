using System.Globalization;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>Environment variables that lengthen the soaks, and where their reports go.</summary>
public static class TestSettings
{
    public static int? Int(string name) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) ? value : null;

    /// <summary>
    /// Keeps a long run's report in TestResults/ of this test project (in git, summarised in README) and returns its path;
    /// the suite's short runs return null and write nothing, so that running the suite does not overwrite those reports.
    /// </summary>
    public static async Task<string?> KeepLongRunReportAsync(string fileName, string text, bool longRun)
    {
        if (!longRun) return null;
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "EmbeddingCache.FunctionalTests.csproj")))
        {
            directory = directory.Parent;
        }
        string results = Path.Combine(directory?.FullName ?? AppContext.BaseDirectory, "TestResults");
        Directory.CreateDirectory(results);
        string path = Path.Combine(results, fileName);
        await File.WriteAllTextAsync(path, text);
        return path;
    }
}
