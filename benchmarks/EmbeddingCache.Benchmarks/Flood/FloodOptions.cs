using EmbeddingCache.Benchmarks.Infrastructure;

namespace EmbeddingCache.Benchmarks.Flood;

/// <summary>What the flooders send, in turn.</summary>
public enum FloodAbuse
{
    /// <summary>A Put just over the server's message size limit.</summary>
    Oversize,

    /// <summary>An Embed whose model name tries to leave the artifacts root.</summary>
    BadModelName,

    /// <summary>A well-formed Put holding NaN.</summary>
    NaNPut,

    /// <summary>An Embed with 2 texts and 1 id.</summary>
    MismatchedLengths,

    /// <summary>An Embed with one text more than the server's rows-per-request limit.</summary>
    TooManyTexts,
}

/// <summary>Settings of the <c>flood</c> verb. The defaults take about 2 minutes on a 2-core machine.</summary>
public sealed class FloodOptions
{
    /// <summary>Rows warmed before measuring (computed once by Embed with ids). 256 by default.</summary>
    public int Rows { get; set; } = 256;

    /// <summary>Rows per good Get or Embed call. 32 by default: a typical experiment's batch of queries.</summary>
    public int RowsPerCall { get; set; } = 32;

    /// <summary>Concurrent good clients, each waiting for its reply before the next call. 2 by default.</summary>
    public int GoodClients { get; set; } = 2;

    /// <summary>Concurrent flooding clients, each on its own connection, sending as fast as replies come. 4 by default.</summary>
    public int Flooders { get; set; } = 4;

    /// <summary>Seconds of each phase. 8 by default.</summary>
    public int PhaseSeconds { get; set; } = 8;

    /// <summary>Repetitions of the pair of phases (alone, then flooded). 5 by default.</summary>
    public int Repetitions { get; set; } = 5;

    /// <summary>What the flooders send, in turn; all kinds by default. Sending one kind alone shows what each costs.</summary>
    public FloodAbuse[] Abuses { get; set; } = Enum.GetValues<FloodAbuse>();

    /// <summary>Where the Markdown report goes; by default benchmarks/results/flood.md of the repository.</summary>
    public string? Output { get; set; }

    /// <summary>The verb's arguments as given, for the report's header.</summary>
    public string Arguments { get; private set; } = "";

    /// <summary>The usage text of the verb.</summary>
    public const string Usage = """
        flood [--rows N] [--rows-per-call N] [--good-clients N] [--flooders N] [--phase-seconds S] [--repetitions R] [--abuse K,...] [--output FILE]
          Good clients' Get and Embed (cached) latency alone and while other clients flood the server with
          oversize messages, invalid requests and too many texts, in alternating phases of one run:
          --rows N            rows warmed before measuring (default 256)
          --rows-per-call N   rows per good call (default 32)
          --good-clients N    concurrent good clients (default 2)
          --flooders N        concurrent flooding clients (default 4)
          --phase-seconds S   length of each phase (default 8)
          --repetitions R     pairs of phases, alone then flooded (default 5)
          --abuse K[,K...]    flood with these kinds only: Oversize, BadModelName, NaNPut, MismatchedLengths, TooManyTexts (default all)
          --output FILE       report path (default benchmarks/results/flood.md)
        """;

    /// <summary>Reads the verb's arguments; throws <see cref="ArgumentException"/> with the usage on a bad one.</summary>
    public static FloodOptions Parse(IReadOnlyList<string> args)
    {
        var options = new FloodOptions { Arguments = string.Join(' ', args) };
        var reader = new VerbArguments(args, Usage);
        while (reader.MoveNext())
        {
            switch (reader.Current)
            {
                case "--rows":
                    options.Rows = reader.PositiveInt();
                    break;
                case "--rows-per-call":
                    options.RowsPerCall = reader.PositiveInt();
                    break;
                case "--good-clients":
                    options.GoodClients = reader.PositiveInt();
                    break;
                case "--flooders":
                    options.Flooders = reader.PositiveInt();
                    break;
                case "--phase-seconds":
                    options.PhaseSeconds = reader.PositiveInt();
                    break;
                case "--repetitions":
                    options.Repetitions = reader.PositiveInt();
                    break;
                case "--abuse":
                    options.Abuses = reader.Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                        .Select(name => Enum.TryParse<FloodAbuse>(name, ignoreCase: true, out var abuse) ? abuse : throw new ArgumentException($"Unknown abuse '{name}'.\n{Usage}"))
                        .ToArray();
                    break;
                case "--output":
                    options.Output = reader.Value();
                    break;
                default:
                    throw reader.Unknown();
            }
        }

        if (options.RowsPerCall > options.Rows)
        {
            throw new ArgumentException($"--rows-per-call ({options.RowsPerCall}) cannot exceed --rows ({options.Rows}).\n{Usage}");
        }

        return options;
    }

}
