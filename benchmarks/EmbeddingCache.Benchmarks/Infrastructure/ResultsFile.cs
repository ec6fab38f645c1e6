namespace EmbeddingCache.Benchmarks.Infrastructure;

/// <summary>Where a benchmark's Markdown report goes by default.</summary>
public static class ResultsFile
{
    /// <summary>benchmarks/results/<paramref name="name"/> of the repository the current directory is in, else results/ under it.</summary>
    public static string DefaultPath(string name)
    {
        for (var directory = new DirectoryInfo(Environment.CurrentDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "EmbeddingCache.sln")))
            {
                return Path.Combine(directory.FullName, "benchmarks", "results", name);
            }
        }

        return Path.Combine(Environment.CurrentDirectory, "results", name);
    }
}
