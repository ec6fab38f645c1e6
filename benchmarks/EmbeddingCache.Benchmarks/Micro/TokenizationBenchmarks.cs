using BenchmarkDotNet.Attributes;
using EmbeddingCache.Benchmarks.Corpus;
using EmbeddingCache.Inference;
using FastBertTokenizer;

namespace EmbeddingCache.Benchmarks.Micro;

/// <summary>
/// The in-process cost of tokenizing the miss-path corpus with FastBertTokenizer, the library the server's
/// tokenizer is built on: the part of a miss that runs on the caller's thread before a text is queued.
/// </summary>
[MemoryDiagnoser]
public class TokenizationBenchmarks
{
    private readonly BertTokenizer _tokenizer = new();
    private readonly long[] _ids = new long[256];
    private readonly long[] _mask = new long[256];
    private string[] _texts = [];
    private string _modelsDirectory = "";

    /// <summary>Texts tokenized per operation.</summary>
    [Params(100)]
    public int Texts { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _modelsDirectory = Path.Combine(Path.GetTempPath(), $"embcache-micro-{Guid.NewGuid():N}");
        var folder = BuiltInModels.Provision(_modelsDirectory, BuiltInModels.MiniLM);
        using (var vocabulary = new StreamReader(Path.Combine(folder, ModelDefinition.VocabFileName)))
        {
            _tokenizer.LoadVocabulary(vocabulary, convertInputToLowercase: true);
        }

        _texts = SyntheticCorpus.Generate(Texts).Select(text => text.Text).ToArray();
    }

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_modelsDirectory, recursive: true);

    [Benchmark]
    public long TokenizeCorpus()
    {
        long tokens = 0;
        foreach (var text in _texts)
        {
            tokens += _tokenizer.Encode(text, _ids, _mask);
        }

        return tokens;
    }
}
