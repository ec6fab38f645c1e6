using System.Globalization;
using System.Text;

namespace EmbeddingCache.Benchmarks.Corpus;

/// <summary>What a text of the corpus stands for; decides its length.</summary>
public enum TextShape
{
    /// <summary>A search query: 3–14 words, lower case, sometimes a question.</summary>
    Query,

    /// <summary>A passage of 50–300 words, the bulk of a retrieval corpus.</summary>
    Passage,

    /// <summary>A document of 500–1,200 words: far past all-MiniLM-L6-v2's 256 tokens, so truncation is exercised.</summary>
    LongDocument,
}

/// <summary>One text of the corpus with the id a researcher would store it under.</summary>
public sealed record CorpusText(string Id, string Text, TextShape Shape);

/// <summary>
/// A retrieval-like corpus made from a fixed seed, so that every run and every machine measures the same texts:
/// a mix of short queries, 50–300 word passages and a few documents past the model's token limit, in shuffled
/// order (as a corpus file would be, not sorted by length). Every text is distinct, so a cold cache misses on all.
/// </summary>
public static class SyntheticCorpus
{
    /// <summary>The seed used when none is given.</summary>
    public const int DefaultSeed = 20250115;

    /// <summary>Share of queries in the mix.</summary>
    public const double QueryShare = 0.35;

    /// <summary>Share of documents past the token limit in the mix; the rest are passages.</summary>
    public const double LongDocumentShare = 0.04;

    // Words of the research domain the cache serves, with a few accented ones so the tokenizer's accent stripping runs.
    private static readonly string[] Words =
    [
        "the", "of", "and", "to", "in", "a", "is", "that", "for", "on", "with", "as", "by", "are", "this", "be", "from",
        "at", "or", "an", "was", "which", "it", "we", "their", "can", "these", "not", "more", "than", "has", "have",
        "retrieval", "dense", "sparse", "query", "queries", "document", "documents", "passage", "passages", "corpus",
        "embedding", "embeddings", "vector", "vectors", "model", "models", "encoder", "reranker", "ranking", "score",
        "scores", "relevance", "relevant", "judgments", "benchmark", "evaluation", "metric", "recall", "precision",
        "nDCG@10", "MRR", "baseline", "fine-tuned", "training", "negatives", "hard", "contrastive", "loss", "batch",
        "tokens", "tokenizer", "vocabulary", "attention", "transformer", "layers", "pooling", "mean", "cosine",
        "similarity", "index", "cache", "cached", "latency", "throughput", "memory", "disk", "segment", "server",
        "client", "request", "response", "experiment", "experiments", "results", "table", "figure", "section",
        "approach", "method", "methods", "proposed", "previous", "work", "studies", "shows", "show", "improves",
        "significantly", "compared", "against", "across", "datasets", "dataset", "domain", "domains", "zero-shot",
        "multilingual", "English", "questions", "answers", "answer", "question", "natural", "language", "search",
        "engine", "users", "user", "information", "knowledge", "Wikipedia", "articles", "article", "title", "body",
        "history", "river", "city", "population", "century", "government", "war", "music", "album", "film", "team",
        "season", "species", "protein", "cells", "patients", "treatment", "clinical", "study", "trial", "disease",
        "energy", "solar", "climate", "temperature", "water", "carbon", "emissions", "policy", "economic", "market",
        "prices", "company", "software", "hardware", "network", "protocol", "security", "privacy", "data", "large",
        "small", "new", "first", "second", "most", "many", "several", "each", "both", "however", "although", "because",
        "while", "when", "where", "who", "what", "how", "why", "during", "after", "before", "between", "within",
        "without", "under", "over", "into", "through", "about", "also", "only", "other", "such", "used", "using",
        "based", "known", "called", "found", "made", "given", "high", "low", "long", "short", "early", "late", "public",
        "national", "international", "university", "research", "researchers", "scientists", "analysis", "report",
        "café", "naïve", "Zürich", "São", "Paulo", "Müller", "résumé", "façade", "coöperation", "jalapeño",
    ];

    /// <summary>Makes <paramref name="count"/> distinct texts from <paramref name="seed"/>; the same arguments always give the same corpus.</summary>
    public static IReadOnlyList<CorpusText> Generate(int count, int seed = DefaultSeed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        var random = new Random(seed);
        var longDocuments = (int)Math.Round(count * LongDocumentShare);
        var queries = (int)Math.Round(count * QueryShare);
        var shapes = new List<TextShape>(count);
        shapes.AddRange(Enumerable.Repeat(TextShape.LongDocument, longDocuments));
        shapes.AddRange(Enumerable.Repeat(TextShape.Query, queries));
        shapes.AddRange(Enumerable.Repeat(TextShape.Passage, count - longDocuments - queries));
        random.Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(shapes));

        var seen = new HashSet<string>(StringComparer.Ordinal);
        var texts = new List<CorpusText>(count);
        foreach (var shape in shapes)
        {
            string text;
            do
            {
                text = shape switch
                {
                    TextShape.Query => Query(random),
                    TextShape.Passage => Prose(random, random.Next(50, 301)),
                    _ => Prose(random, random.Next(500, 1201)),
                };
            }
            while (!seen.Add(text));

            texts.Add(new CorpusText($"doc-{texts.Count:D6}", text, shape));
        }

        return texts;
    }

    private static string Query(Random random)
    {
        var words = random.Next(3, 15);
        var builder = new StringBuilder();
        for (var i = 0; i < words; i++)
        {
            if (i > 0)
            {
                builder.Append(' ');
            }

            builder.Append(Word(random).ToLower(CultureInfo.InvariantCulture));
        }

        if (random.Next(3) == 0)
        {
            builder.Append('?');
        }

        return builder.ToString();
    }

    private static string Prose(Random random, int words)
    {
        var builder = new StringBuilder(words * 7);
        var sentenceLeft = 0;
        for (var i = 0; i < words; i++)
        {
            if (sentenceLeft == 0)
            {
                if (i > 0)
                {
                    builder.Append(". ");
                }

                sentenceLeft = random.Next(8, 26);
                var first = Word(random);
                builder.Append(char.ToUpperInvariant(first[0])).Append(first, 1, first.Length - 1);
            }
            else
            {
                builder.Append(random.Next(14) == 0 ? ", " : " ");
                builder.Append(random.Next(30) == 0 ? Number(random) : Word(random));
            }

            sentenceLeft--;
        }

        return builder.Append('.').ToString();
    }

    // Zipf-like: common words far more often than rare ones, as in real text.
    private static string Word(Random random)
    {
        var rank = (int)Math.Floor(Math.Pow(Words.Length + 1, random.NextDouble())) - 1;
        return Words[Math.Clamp(rank, 0, Words.Length - 1)];
    }

    private static string Number(Random random) => random.Next(4) switch
    {
        0 => random.Next(1800, 2026).ToString(CultureInfo.InvariantCulture),
        1 => (random.NextDouble() * 100).ToString("0.0", CultureInfo.InvariantCulture) + "%",
        _ => random.Next(2, 5000).ToString(CultureInfo.InvariantCulture),
    };
}
