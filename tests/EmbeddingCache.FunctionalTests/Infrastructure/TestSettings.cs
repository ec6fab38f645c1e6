using System.Globalization;

namespace EmbeddingCache.FunctionalTests.Infrastructure;

/// <summary>Environment variables that lengthen the soaks, and where their reports go.</summary>
public static class TestSettings
{
    public static int? Int(string name) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) ? value : null;

    /// <summary>TestResults/ of this test project, where dotnet test puts its results by default.</summary>
    public static string ResultsDirectory()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "EmbeddingCache.FunctionalTests.csproj")))
        {
            directory = directory.Parent;
        }
        string results = Path.Combine(directory?.FullName ?? AppContext.BaseDirectory, "TestResults");
        Directory.CreateDirectory(results);
        return results;
    }
}
