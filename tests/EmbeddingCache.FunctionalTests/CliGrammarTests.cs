using System.Text;
using System.Text.Json;
using EmbeddingCache.FunctionalTests.Infrastructure;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>One CLI grammar: the model first, <c>--artifacts DIR</c> the root a verb works on directly (its logs there), <c>--server</c> or it, not both.</summary>
public sealed class CliGrammarTests(ITestOutputHelper output) : ServerTest(output)
{
    [Fact]
    public async Task Warm_and_invalidate_work_on_a_root_directly_and_log_only_under_it()
    {
        string work = Path.Combine(Artifacts.Path, "work");
        string root = Path.Combine(Artifacts.Path, "root");
        Directory.CreateDirectory(work);
        string corpus = Path.Combine(work, "collection.tsv");
        // As Windows tools write it: a byte-order mark and CRLF line ends, neither of which belongs to an id or a text.
        await File.WriteAllTextAsync(corpus, string.Concat(Wire.Texts(seed: 51, count: 12).Select((text, i) => $"{i}\t{text}\r\n")), new UTF8Encoding(true));

        var (warmed, warmReport) = await Embcache.RunInAsync(work, "warm", Wire.MiniLM, corpus, "--artifacts", root);
        Output.WriteLine(warmReport);
        Assert.True(warmed == 0, warmReport);
        Assert.Contains("TSV, 12 rows as documents, stored under their ids", warmReport);
        Assert.Single(Directory.GetFiles(Path.Combine(root, "logs"), "warm-*.log"));
        Assert.False(Directory.Exists(Path.Combine(work, "artifacts")), "warm --artifacts DIR wrote to ./artifacts as well");

        string npy = Path.Combine(work, "collection.npy");
        var (exported, exportReport) = await Embcache.RunInAsync(work, "export", Wire.MiniLM, "--out", npy, "--artifacts", root);
        Assert.True(exported == 0, exportReport);
        var ids = JsonSerializer.Deserialize<string[]>(await File.ReadAllTextAsync(Path.Combine(work, "collection.ids.json")))!;
        Assert.Equal(Enumerable.Range(0, 12).Select(i => $"{i}").Order(), ids.Order());

        var (invalidated, invalidateReport) = await Embcache.RunInAsync(work, "invalidate", Wire.MiniLM, "--kind", "document", "--artifacts", root);
        Assert.True(invalidated == 0, invalidateReport);
        Assert.Contains("invalidated all-MiniLM-L6-v2 (document): 12 rows", invalidateReport);

        var (both, bothReport) = await Embcache.RunInAsync(work, "warm", Wire.MiniLM, corpus, "--server", "http://127.0.0.1:1", "--artifacts", root);
        Assert.Equal(1, both);
        Assert.Contains("not both", bothReport);

        var (oldSpelling, oldReport) = await Embcache.RunInAsync(work, "warm", corpus, "--model", Wire.MiniLM);
        Assert.Equal(1, oldSpelling);
        Assert.Contains("embcache warm MODEL", oldReport);
        Assert.False(Directory.Exists(Path.Combine(work, "artifacts")));
    }
}
