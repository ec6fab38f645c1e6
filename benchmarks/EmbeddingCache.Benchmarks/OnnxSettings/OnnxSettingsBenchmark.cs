using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using System.Text;
using EmbeddingCache.Benchmarks.Corpus;
using EmbeddingCache.Benchmarks.Infrastructure;
using EmbeddingCache.Inference;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;

namespace EmbeddingCache.Benchmarks.OnnxSettings;

/// <summary>One ONNX Runtime session setting tried against the server's current ones.</summary>
/// <param name="Name">Short label for the report.</param>
/// <param name="Change">What differs from the server's settings.</param>
/// <param name="Tune">Applied to the server's session options before the session is made.</param>
public sealed record SessionVariant(string Name, string Change, Action<SessionOptions> Tune);

/// <summary>
/// The <c>onnx</c> verb: texts/s of the server's <see cref="TextEncoder"/> under ONNX Runtime session variants, on the
/// same corpus cut into the same batches as the server cuts them. Each variant runs twice per repetition: alone, and
/// with a neighbour thread tokenizing flat out on another core, as request threads do in a busy server.
/// </summary>
public static class OnnxSettingsBenchmark
{
    /// <summary>The variants, the server's current settings first.</summary>
    public static readonly IReadOnlyList<SessionVariant> Variants =
    [
        new("server", "as the server sets it: all graph optimisations, sequential, one intra-op thread per core, no spinning, arena and memory pattern on", _ => { }),
        new("intra-1", "one intra-op thread", o => o.IntraOpNumThreads = 1),
        new("spin", "idle intra-op threads spin (session.intra_op.allow_spinning=1, ONNX Runtime's default)", o => o.AddSessionConfigEntry("session.intra_op.allow_spinning", "1")),
        new("extended", "graph optimisation ORT_ENABLE_EXTENDED", o => o.GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
        new("basic", "graph optimisation ORT_ENABLE_BASIC", o => o.GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC),
        new("no-arena", "CPU memory arena off", o => o.EnableCpuMemArena = false),
        new("no-pattern", "memory pattern off", o => o.EnableMemoryPattern = false),
        new("parallel", "ORT_PARALLEL execution with 2 inter-op threads", o =>
        {
            o.ExecutionMode = ExecutionMode.ORT_PARALLEL;
            o.InterOpNumThreads = 2;
        }),
    ];

    /// <summary>Runs every variant and writes the report; returns the process exit code.</summary>
    public static async Task<int> RunAsync(OnnxSettingsOptions options, CancellationToken cancellationToken)
    {
        var runStarted = Stopwatch.GetTimestamp();
        var loadBefore = MachineLoad.LoadAverage();
        var workRoot = Path.Combine(Path.GetTempPath(), $"embcache-onnx-{Guid.NewGuid():N}");
        try
        {
            var texts = SyntheticCorpus.Generate(options.Texts, options.Seed).Select(text => text.Text).ToArray();
            var model = ModelDefinition.Load(BuiltInModels.Provision(Path.Combine(workRoot, "models"), BuiltInModels.MiniLM));
            var encoderOptions = new EncoderOptions();
            var batches = PlanBatches(model, encoderOptions, texts);
            Console.WriteLine($"Corpus: {texts.Length} texts in {batches.Count} batches; {options.Repetitions} repetition(s); load average before: {loadBefore}");

            var alone = Variants.ToDictionary(variant => variant.Name, _ => new List<PhaseResult>());
            var crowded = Variants.ToDictionary(variant => variant.Name, _ => new List<PhaseResult>());
            var agreement = Variants.ToDictionary(variant => variant.Name, _ => 1.0);
            float[]? reference = null;
            for (var repetition = 1; repetition <= options.Repetitions; repetition++)
            {
                foreach (var variant in Variants)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var encoder = TextEncoder.Load(model, encoderOptions, NullLoggerFactory.Instance, variant.Tune);
                    encoder.Warmup();
                    var (quiet, rows) = Run(encoder, batches, texts.Length, neighbour: null);
                    reference ??= rows;
                    agreement[variant.Name] = Math.Min(agreement[variant.Name], MinCosine(rows, reference, encoder.Dims));
                    var busy = Run(encoder, batches, texts.Length, neighbour: texts).Result;
                    alone[variant.Name].Add(quiet);
                    crowded[variant.Name].Add(busy);
                    Console.WriteLine($"  rep {repetition} {variant.Name,-10} {quiet.TextsPerSecond,7:F1} texts/s alone, {busy.TextsPerSecond,7:F1} with a busy neighbour" +
                        $"  (other processes {quiet.Load.Others:P0} / {busy.Load.Others:P0} of the CPU)");
                }
            }

            var markdown = Report(options, texts.Length, batches, alone, crowded, agreement, loadBefore, MachineLoad.LoadAverage(), Stopwatch.GetElapsedTime(runStarted));
            Console.WriteLine();
            Console.WriteLine(markdown);
            var output = options.Output ?? ResultsPath("onnx-settings.md");
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
            await File.WriteAllTextAsync(output, markdown, cancellationToken).ConfigureAwait(false);
            Console.WriteLine($"Written to {Path.GetFullPath(output)}");
            return 0;
        }
        finally
        {
            if (Directory.Exists(workRoot))
            {
                Directory.Delete(workRoot, recursive: true);
            }
        }
    }

    /// <summary>The corpus tokenized, sorted by length and cut as the server's batcher cuts a window.</summary>
    private static List<TokenizedText[]> PlanBatches(ModelDefinition model, EncoderOptions encoderOptions, string[] texts)
    {
        using var encoder = TextEncoder.Load(model, encoderOptions, NullLoggerFactory.Instance);
        var tokenized = texts.Select(encoder.Tokenize).ToArray();
        var lengths = tokenized.Select(text => text.Length).ToArray();
        return [.. BatchPlanner.Plan(lengths, encoderOptions.TokenBudget, encoderOptions.MaxBatchSize)
            .Select(batch => batch.Select(index => tokenized[index]).ToArray())];
    }

    private static (PhaseResult Result, float[] Rows) Run(TextEncoder encoder, List<TokenizedText[]> batches, int texts, string[]? neighbour)
    {
        var rows = new float[texts * encoder.Dims];
        using var stop = new CancellationTokenSource();
        Thread? neighbourThread = null;
        if (neighbour is not null)
        {
            // Request threads' work in a busy server: tokenizing, hashing, copying; here tokenizing, flat out.
            neighbourThread = new Thread(() =>
            {
                for (var i = 0; !stop.IsCancellationRequested; i = (i + 1) % neighbour.Length)
                {
                    encoder.Tokenize(neighbour[i]);
                }
            })
            {
                IsBackground = true,
                Name = "busy neighbour",
            };
            neighbourThread.Start();
        }

        var watch = MachineLoad.Watch(OwnCpuTime);
        var started = Stopwatch.GetTimestamp();
        var offset = 0;
        foreach (var batch in batches)
        {
            encoder.EncodeBatch(batch, rows.AsSpan(offset * encoder.Dims, batch.Length * encoder.Dims));
            offset += batch.Length;
        }

        var elapsed = Stopwatch.GetElapsedTime(started);
        var load = watch.Stop();
        stop.Cancel();
        neighbourThread?.Join();
        return (new PhaseResult(texts / elapsed.TotalSeconds, load), rows);
    }

    private static double MinCosine(float[] rows, float[] reference, int dims)
    {
        var lowest = 1.0;
        for (var row = 0; row < rows.Length / dims; row++)
        {
            lowest = Math.Min(lowest, TensorPrimitives.CosineSimilarity(rows.AsSpan(row * dims, dims), reference.AsSpan(row * dims, dims)));
        }

        return lowest;
    }

    private static string Report(
        OnnxSettingsOptions options, int texts, List<TokenizedText[]> batches, Dictionary<string, List<PhaseResult>> alone,
        Dictionary<string, List<PhaseResult>> crowded, Dictionary<string, double> agreement, string loadBefore, string loadAfter, TimeSpan duration)
    {
        var invariant = CultureInfo.InvariantCulture;
        var baseline = Variants[0].Name;
        var text = new StringBuilder();
        var command = $"dotnet run -c Release --project benchmarks/EmbeddingCache.Benchmarks -- onnx {options.Arguments}".TrimEnd();
        text.AppendLine("# ONNX Runtime session settings: all-MiniLM-L6-v2 through the server's encoder");
        text.AppendLine();
        text.AppendLine(invariant, $"Generated by `{command}` on {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, in {duration.TotalMinutes:F1} min.");
        text.AppendLine();
        text.AppendLine(invariant, $"- {texts} texts of the miss benchmark's corpus (seed {options.Seed}), sorted by length and cut by the server's planner into {batches.Count} batches " +
            $"({batches.Sum(b => b.Length * b.Max(t => t.Length)):N0} token positions); every variant runs these batches through `TextEncoder.EncodeBatch`, pooling included.");
        text.AppendLine(invariant, $"- Machine: {Environment.ProcessorCount} cores, .NET {Environment.Version}. Load average (1 / 5 / 15 min): before {loadBefore}, after {loadAfter}.");
        text.AppendLine(invariant, $"- {options.Repetitions} repetition(s), variants interleaved. \"Busy neighbour\": another thread tokenizes texts flat out during the run, as request threads do in a loaded server.");
        text.AppendLine();
        text.AppendLine("| variant | change | texts/s alone (median, min–max) | × server | texts/s, busy neighbour (median, min–max) | × server | other processes' CPU | min cosine to server |");
        text.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var variant in Variants)
        {
            var quiet = Spread.Of(alone[variant.Name].Select(r => r.TextsPerSecond));
            var busy = Spread.Of(crowded[variant.Name].Select(r => r.TextsPerSecond));
            var quietRatio = Spread.Of(alone[variant.Name].Zip(alone[baseline], (r, b) => r.TextsPerSecond / b.TextsPerSecond));
            var busyRatio = Spread.Of(crowded[variant.Name].Zip(crowded[baseline], (r, b) => r.TextsPerSecond / b.TextsPerSecond));
            var others = Spread.Of(alone[variant.Name].Concat(crowded[variant.Name]).Select(r => r.Load.Others));
            text.AppendLine(invariant,
                $"| {variant.Name} | {variant.Change} | {quiet.Median:F1} ({quiet.Range("F1")}) | {quietRatio.Median:F3} | {busy.Median:F1} ({busy.Range("F1")}) | {busyRatio.Median:F3} | {others.Median:P1} | {agreement[variant.Name]:F6} |");
        }

        text.AppendLine();
        text.AppendLine("Ratios are taken within each repetition (variant ÷ server of the same repetition), then the median is shown.");
        return text.ToString();
    }

    private static TimeSpan OwnCpuTime()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }

    /// <summary>benchmarks/results/<paramref name="file"/> of the repository the current directory is in, else results/ under it.</summary>
    private static string ResultsPath(string file)
    {
        for (var directory = new DirectoryInfo(Environment.CurrentDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "EmbeddingCache.sln")))
            {
                return Path.Combine(directory.FullName, "benchmarks", "results", file);
            }
        }

        return Path.Combine(Environment.CurrentDirectory, "results", file);
    }

    private readonly record struct PhaseResult(double TextsPerSecond, PhaseLoad Load);
}
