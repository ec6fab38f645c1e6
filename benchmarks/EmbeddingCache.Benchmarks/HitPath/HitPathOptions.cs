using System.Globalization;
using EmbeddingCache.Benchmarks.Infrastructure;

namespace EmbeddingCache.Benchmarks.HitPath;

/// <summary>
/// Settings of the <c>hits</c> verb. The defaults take about 10–15 minutes on a quiet 2-core machine the first time
/// (building the 1M and 2M caches), less on a rerun that reuses them; <c>--quick</c> about 3 minutes.
/// </summary>
public sealed class HitPathOptions
{
    /// <summary>Vectors in the cache (and in Redis). 1,000,000 by default; the open-time cache is twice as large.</summary>
    public int Rows { get; set; } = 1_000_000;

    /// <summary>Rows per request in the latency comparison.</summary>
    public IReadOnlyList<int> Sizes { get; set; } = [1, 32, 1000, 10_000];

    /// <summary>
    /// Timed calls per peer at N = 1 and 32, over all rounds; N = 1000 gets a fifth of them and N = 10,000 a
    /// twentieth (at least one per round). 2,000 by default.
    /// </summary>
    public int Calls { get; set; } = 2000;

    /// <summary>Rounds the latency calls are split into; every round runs every peer, in a rotating order. 10 by default.</summary>
    public int Rounds { get; set; } = 10;

    /// <summary>Concurrent clients at N = 32: 1, 8 and 64 by default, as threads and as processes.</summary>
    public IReadOnlyList<int> Clients { get; set; } = [1, 8, 64];

    /// <summary>Seconds each concurrency measurement runs. 2 by default.</summary>
    public double Seconds { get; set; } = 2;

    /// <summary>Rounds of the concurrency comparison. 3 by default.</summary>
    public int ConcurrencyRounds { get; set; } = 3;

    /// <summary>Server starts per cache size when measuring open time. 3 by default.</summary>
    public int OpenRepeats { get; set; } = 3;

    /// <summary>Seed of the vectors and texts.</summary>
    public int Seed { get; set; } = 20250115;

    /// <summary>Texts stored by text (Put with texts) for the Embed-of-cached-texts peer; at least twice the largest N.</summary>
    public int CachedTexts => Math.Max(2 * Sizes.Max(), 1000);

    /// <summary>Where the report goes; by default benchmarks/results/hit-path.md (the chart beside it, .svg).</summary>
    public string? Output { get; set; }

    /// <summary>Where datasets and caches are built and kept for reruns; benchmarks/.scratch of the repository by default.</summary>
    public string? WorkDirectory { get; set; }

    /// <summary>Leave out Redis.</summary>
    public bool SkipRedis { get; set; }

    /// <summary>Leave out the Embed-of-cached-texts peer.</summary>
    public bool SkipEmbed { get; set; }

    /// <summary>Leave out the in-client peers (open_cache get, memory-map gathers).</summary>
    public bool SkipLocal { get; set; }

    /// <summary>Leave out the concurrency comparison.</summary>
    public bool SkipConcurrency { get; set; }

    /// <summary>Leave out open time and index memory (and building the twice-as-large cache).</summary>
    public bool SkipOpen { get; set; }

    /// <summary>
    /// The local fast path only (issue #16): open_cache get and lookup_texts against a plain memmap gather, Redis MGET
    /// and gRPC Get, latency only (no Embed peer, no concurrency, no open time); the report goes to local-path.md.
    /// </summary>
    public bool Local { get; private set; }

    /// <summary>A short run for checking that everything works: fewer rows, calls and seconds.</summary>
    public bool Quick { get; private set; }

    /// <summary>The verb's arguments as given, for the report's header.</summary>
    public string Arguments { get; private set; } = "";

    /// <summary>The usage text of the verb.</summary>
    public const string Usage = """
        hits [--rows N] [--calls C] [--rounds R] [--clients 1,8,64] [--seconds S] [--seed S] [--quick]
             [--output FILE] [--work-dir DIR] [--skip-redis] [--skip-embed] [--skip-local] [--skip-concurrency] [--skip-open] [--local]
          Hit-path latency and throughput from a Python grpcio client, in one run, round-robin, against:
            floor            a bare Grpc.AspNetCore server returning a precomputed payload (no lookup)
            floor-bytes      the floor's reply taken as raw bytes (grpcio alone: no protobuf parse, no numpy)
            redis            Redis 7 MGET of the same vectors (persistence off)
            mmap-npy/-segments  numpy gathers from memory maps in the client (the limit)
            embcache-get/-embed and the Python client's local open_cache(...).get and .lookup_texts
          Also open time and index memory at N and 2N vectors, and the server's resident memory.
          --rows N          vectors in the cache (default 1000000; --quick: 100000)
          --calls C         timed calls per peer at N=1 and 32; N=1000 gets C/5, N=10000 C/20 (default 2000; --quick 300)
          --rounds R        rounds the calls are split into, peers in rotating order (default 10; --quick 3)
          --clients LIST    concurrent clients at N=32, as threads and as processes (default 1,8,64)
          --seconds S       seconds per concurrency measurement (default 2; --quick 0.5)
          --seed S          seed of vectors and texts (default 20250115)
          --output FILE     report path (default benchmarks/results/hit-path.md; chart beside it as .svg)
          --work-dir DIR    datasets and caches, kept for reruns (default benchmarks/.scratch)
          --quick           a short run to check that everything works (figures not for the README)
          --skip-redis, --skip-embed, --skip-local, --skip-concurrency, --skip-open   leave a part out
          --local           the local fast path only: open_cache get/lookup_texts against a plain memmap gather,
                            Redis MGET and gRPC Get, as ratios per round (report: benchmarks/results/local-path.md)
        """;

    /// <summary>Reads the verb's arguments; throws <see cref="ArgumentException"/> with the usage on a bad one.</summary>
    public static HitPathOptions Parse(IReadOnlyList<string> args)
    {
        var options = new HitPathOptions { Arguments = string.Join(' ', args) };
        if (args.Contains("--quick"))
        {
            options.Quick = true;
            options.Rows = 100_000;
            options.Calls = 300;
            options.Rounds = 3;
            options.Seconds = 0.5;
            options.ConcurrencyRounds = 1;
            options.OpenRepeats = 1;
        }

        var reader = new VerbArguments(args, Usage);
        while (reader.MoveNext())
        {
            switch (reader.Current)
            {
                case "--quick":
                    break;
                case "--rows":
                    options.Rows = reader.PositiveInt();
                    break;
                case "--calls":
                    options.Calls = reader.PositiveInt();
                    break;
                case "--rounds":
                    options.Rounds = reader.PositiveInt();
                    break;
                case "--clients":
                    options.Clients = reader.Value().Split(',')
                        .Select(text => int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var count) && count > 0
                            ? count
                            : throw new ArgumentException($"--clients takes positive whole numbers separated by commas, not '{text}'.\n{Usage}"))
                        .ToArray();
                    break;
                case "--seconds":
                    options.Seconds = double.TryParse(reader.Value(), NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds > 0
                        ? seconds
                        : throw new ArgumentException($"--seconds must be a positive number.\n{Usage}");
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
                case "--skip-redis":
                    options.SkipRedis = true;
                    break;
                case "--skip-embed":
                    options.SkipEmbed = true;
                    break;
                case "--skip-local":
                    options.SkipLocal = true;
                    break;
                case "--skip-concurrency":
                    options.SkipConcurrency = true;
                    break;
                case "--skip-open":
                    options.SkipOpen = true;
                    break;
                case "--local":
                    options.Local = options.SkipEmbed = options.SkipConcurrency = options.SkipOpen = true;
                    break;
                default:
                    throw reader.Unknown();
            }
        }

        if (options.Rows < options.CachedTexts)
        {
            throw new ArgumentException($"--rows must be at least {options.CachedTexts} (twice the largest request).\n{Usage}");
        }

        return options;
    }

    /// <summary>Timed calls per peer at <paramref name="size"/> rows, over all rounds.</summary>
    public int CallsAt(int size) => Math.Max(Rounds, size switch
    {
        <= 32 => Calls,
        <= 1000 => Calls / 5,
        _ => Calls / 20,
    });

}
