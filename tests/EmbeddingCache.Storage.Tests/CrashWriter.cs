using Microsoft.Extensions.Logging.Abstractions;

namespace EmbeddingCache.Storage.Tests;

/// <summary>
/// The test assembly doubles as a writer process for the crash tests: <c>dotnet EmbeddingCache.Storage.Tests.dll
/// crash-writer ROOT FIRST</c> appends rows from number FIRST on, from four concurrent appenders, and
/// prints "ack N" to stdout once the row numbered N is acknowledged, until it is killed.
/// </summary>
public static class Program
{
    public const int Dims = 8;
    public const int SegmentRows = 37;

    public static async Task<int> Main(string[] args)
    {
        if (args is not ["crash-writer", string root, string first])
        {
            await Console.Error.WriteLineAsync("usage: crash-writer ROOT FIRST");
            return 2;
        }

        int start = int.Parse(first, System.Globalization.CultureInfo.InvariantCulture);
        using ArtifactsRoot artifacts = ArtifactsRoot.Open(root, new StorageOptions { SegmentRows = SegmentRows }, NullLoggerFactory.Instance);
        VectorStore store = artifacts.CreateOrOpenCache("crash", Rows.Descriptor(Dims))[VectorKind.Document];
        var output = TextWriter.Synchronized(Console.Out);
        Task[] appenders = [.. Enumerable.Range(0, 4).Select(lane => Task.Run(async () =>
        {
            for (int i = 0; ; i++)
            {
                // Lane-interleaved numbers, in batches of 1 to 5 rows.
                int size = 1 + (i % 5);
                int[] numbers = [.. Enumerable.Range(0, size).Select(k => start + (((i * 5) + k) * 4) + lane)];
                await store.AppendAsync(Rows.Batch(Dims, numbers), AppendMode.Overwrite, -1);
                foreach (int n in numbers)
                {
                    output.WriteLine($"ack {n}");
                }

                output.Flush();
            }
        }))];
        await Task.WhenAll(appenders);
        return 0;
    }
}
