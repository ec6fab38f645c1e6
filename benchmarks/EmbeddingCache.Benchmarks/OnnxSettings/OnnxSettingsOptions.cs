using EmbeddingCache.Benchmarks.Corpus;
using EmbeddingCache.Benchmarks.Infrastructure;

namespace EmbeddingCache.Benchmarks.OnnxSettings;

/// <summary>Settings of the <c>onnx</c> verb. The defaults take about 4 minutes on a quiet 2-core machine.</summary>
public sealed class OnnxSettingsOptions
{
    /// <summary>Texts in the corpus. 200 by default: about 8 s per variant per repetition on 2 cores.</summary>
    public int Texts { get; set; } = 200;

    /// <summary>Repetitions of every variant, interleaved so that drift in the machine's load hits all alike. 3 by default.</summary>
    public int Repetitions { get; set; } = 3;

    /// <summary>The corpus seed.</summary>
    public int Seed { get; set; } = SyntheticCorpus.DefaultSeed;

    /// <summary>Where the Markdown report goes; by default benchmarks/results/onnx-settings.md of the repository.</summary>
    public string? Output { get; set; }

    /// <summary>The verb's arguments as given, for the report's header.</summary>
    public string Arguments { get; private set; } = "";

    /// <summary>The usage text of the verb.</summary>
    public const string Usage = """
        onnx [--texts N] [--repetitions R] [--seed S] [--output FILE]
          ONNX Runtime session settings for the server's encoder, all-MiniLM-L6-v2: every variant (threads, spinning,
          graph optimisation, memory arena and pattern, execution mode) runs the same length-sorted batches, planned as
          the server plans them, through the server's own TextEncoder; variants are interleaved within a repetition.
          --texts N         corpus size (default 200)
          --repetitions R   repetitions of every variant (default 3)
          --seed S          corpus seed (default 20250115)
          --output FILE     report path (default benchmarks/results/onnx-settings.md)
        """;

    /// <summary>Reads the verb's arguments; throws <see cref="ArgumentException"/> with the usage on a bad one.</summary>
    public static OnnxSettingsOptions Parse(IReadOnlyList<string> args)
    {
        var options = new OnnxSettingsOptions { Arguments = string.Join(' ', args) };
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
                default:
                    throw reader.Unknown();
            }
        }

        return options;
    }

}
