using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Numerics.Tensors;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Engine;

/// <summary>
/// The cache itself: looks rows up in storage, sends the distinct misses to the model's batcher (once,
/// even when several requests miss the same key), writes them back durably, and answers in input order.
/// </summary>
public sealed partial class EmbeddingCacheEngine : IAsyncDisposable
{
    /// <summary>
    /// Embeds of one stream (an EmbedStream call, a warm run) computed at once and answered in order: enough to keep
    /// the batcher fed, few enough to bound memory.
    /// </summary>
    public const int StreamWindow = 4;

    private readonly EngineOptions options;
    private readonly ArtifactsRoot root;
    private readonly ModelCatalog catalog;
    private readonly VerifySamples samples;
    private readonly ILogger logger;
    // Vectors being computed, by model, kind and key: a text missed by several requests at once is computed once.
    private readonly SingleFlight<(ServedModel Model, VectorKind Kind, ContentKey Key), float[]> computing = new();
    private volatile bool stopping;
    private readonly Lazy<Task> cachesOpened;

    private EmbeddingCacheEngine(EngineOptions options, ArtifactsRoot root, ILoggerFactory loggerFactory)
    {
        this.options = options;
        this.root = root;
        catalog = new ModelCatalog(root, options, loggerFactory);
        samples = new VerifySamples(root.EmbeddingsDirectory);
        logger = loggerFactory.CreateLogger<EmbeddingCacheEngine>();
        cachesOpened = new Lazy<Task>(() => Task.Run(OpenEveryCache));
    }

    /// <summary>
    /// Opens the artifacts root (taking its writer lock) and returns an engine over it; in follower mode
    /// (<see cref="EngineOptions.Follow"/>) it opens the root read-only, without the lock, and follows its writer.
    /// </summary>
    public static EmbeddingCacheEngine Open(EngineOptions options, ILoggerFactory loggerFactory)
    {
        if (options.Validate() is { } problem) throw new ArgumentException(problem, nameof(options));
        var directory = Path.GetFullPath(options.ArtifactsDirectory);
        var root = options.Follow.Enabled
            ? ArtifactsRoot.OpenFollower(directory, options.Storage, TimeSpan.FromMilliseconds(options.Follow.PollIntervalMs), loggerFactory)
            : ArtifactsRoot.Open(directory, options.Storage, loggerFactory);
        return new EmbeddingCacheEngine(options, root, loggerFactory);
    }

    /// <summary>The artifacts root the engine serves.</summary>
    public string ArtifactsDirectory => root.RootDirectory;

    /// <summary>True when the engine follows a root another server writes: it serves reads and refuses writes.</summary>
    public bool IsFollower => root.IsFollower;

    /// <summary>
    /// The generation and sequence (committed rows of that generation) a model's kind is served at now, for the trailers
    /// of a reply; null for a model no call has loaded.
    /// </summary>
    public (long Generation, long Sequence)? PositionOf(string model, VectorKind kind) =>
        catalog.Loaded(model)?.Cache[kind].Position;

    /// <summary>True once every model in <see cref="EngineOptions.PreloadModels"/> is loaded and warmed.</summary>
    public bool Ready { get; private set; }

    /// <summary>
    /// Loads and warms the preloaded models so that the first real request is not slow, and opens every other
    /// cache on disk: recovery trims torn tails and quarantines untrustworthy files now, at start, where an
    /// operator reads the log, rather than at some model's first request.
    /// </summary>
    public async Task LoadPreloadedModelsAsync(CancellationToken cancellationToken)
    {
        BeginOpeningCaches();
        // A follower loads no encoder, and its models appear as their writer publishes them.
        foreach (var name in root.IsFollower ? [] : options.PreloadModels)
        {
            var model = await catalog.GetAsync(name, cancellationToken).ConfigureAwait(false);
            if (model.CanCompute)
            {
                using var warm = await model.AcquireBatcherAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        await cachesOpened.Value.WaitAsync(cancellationToken).ConfigureAwait(false);
        Ready = true;
    }

    /// <summary>
    /// Starts opening every cache on disk in the background, so that recovery runs while the host starts and the
    /// preloaded models load (a model's first request waits for its own cache only). Idempotent.
    /// </summary>
    public void BeginOpeningCaches() => _ = cachesOpened.Value;

    private void OpenEveryCache()
    {
        foreach (var name in root.ListCaches())
        {
            try
            {
                root.OpenCache(name);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
            {
                logger.CacheOpenFailed(name, e.Message);
            }
        }
    }

    /// <summary>The batcher of a model that computes, loaded if need be: tests hold its batches with its gate.</summary>
    internal async Task<EncodingBatcher> BatcherAsync(string name, CancellationToken cancellationToken)
    {
        var model = await catalog.GetAsync(name, cancellationToken).ConfigureAwait(false);
        using var lease = await model.AcquireBatcherAsync(cancellationToken).ConfigureAwait(false);
        return lease.Batcher;
    }

    /// <summary>Refuses new requests with UNAVAILABLE; requests already running finish.</summary>
    public void BeginShutdown() => stopping = true;

    /// <summary>One vector per text: hits from the cache, the distinct misses computed once and written back.</summary>
    /// <remarks>
    /// <paramref name="sentAsReply"/> is false when the rows feed a computation (Score) rather than a reply, which
    /// <see cref="EngineOptions.MaxSendMessageBytes"/> then does not bound.
    /// </remarks>
    public async Task<LookupResult> EmbedAsync(EmbedCommand command, CancellationToken cancellationToken, bool sentAsReply = true)
    {
        ThrowIfStopping();
        RequestValidation.Embed(command, options);
        long started = Stopwatch.GetTimestamp();
        var (model, store, generation) = await ResolveAsync(command.Model, command.Kind, cancellationToken).ConfigureAwait(false);
        int count = command.Texts.Count;
        if (sentAsReply) RequestValidation.ReplyRows(count, store.Dims, command.DType, options);
        var inputs = new string[count];
        var keys = new ContentKey[count];
        for (int i = 0; i < count; i++)
        {
            inputs[i] = model.TokenizerInput(command.Kind, command.Texts[i]);
            keys[i] = ContentKey.FromText(inputs[i]);
        }
        var output = new RowWriter(count, store.Dims, command.DType);
        try
        {
            return await FillAsync(model, store, generation, command, inputs, keys, output, started, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            output.Rows.Dispose();
            throw;
        }
    }

    /// <summary>The rows of <see cref="EmbedAsync"/>: hits gathered, misses computed once and written back.</summary>
    private async Task<LookupResult> FillAsync(
        ServedModel model, VectorStore store, long generation, EmbedCommand command, string[] inputs, ContentKey[] keys,
        RowWriter output, long started, CancellationToken cancellationToken)
    {
        int count = keys.Length;
        var found = new bool[count];
        int hits = store.Gather(keys, command.DType, output.Data, found);
        var sources = new RowSource[count];
        for (int i = 0; i < count; i++) sources[i] = found[i] ? RowSource.Cached : RowSource.Missing;
        var lookupTime = Stopwatch.GetElapsedTime(started);

        var misses = DistinctMisses(keys, found);
        model.Count(hits, count - hits);
        EncodingTimings encoding = default;
        TimeSpan writeTime = default;
        if (misses.Count > 0 && !command.CacheOnly)
        {
            ThrowIfFollower($"{misses.Count} of the texts are not cached and computing them writes them; send cache_only to get the hits alone");
            if (!model.CanCompute)
            {
                CacheRequestException.Throw(CacheErrorKind.FailedPrecondition,
                    $"model '{model.Name}' is store-only (its vectors were Put, it has no ONNX model folder) and " +
                    $"{misses.Count} of the texts are not cached: Put their vectors first, or send cache_only to get the hits alone");
            }
            (var computed, encoding) = await ComputeOnceAsync(
                model, command.Kind, misses.Select(m => (keys[m], inputs[m])).ToArray(), cancellationToken).ConfigureAwait(false);
            var vectorOf = new Dictionary<ContentKey, float[]>(misses.Count);
            for (int m = 0; m < misses.Count; m++) vectorOf[keys[misses[m]]] = computed[m];
            for (int i = 0; i < count; i++)
            {
                if (!found[i])
                {
                    output.Write(i, vectorOf[keys[i]]);
                    sources[i] = RowSource.Computed;
                }
            }
            long writeStarted = Stopwatch.GetTimestamp();
            await WriteBackAsync(model, store, generation, keys, command.Ids, i => !found[i] ? vectorOf[keys[i]] : null)
                .ConfigureAwait(false);
            writeTime = Stopwatch.GetElapsedTime(writeStarted);
            samples.Record(model.Name, command.Kind, misses.Select(m => inputs[m]));
        }
        else if (command.Ids.Count != 0 && !root.IsFollower) // a follower records no id: the writer does when it stores the row
        {
            long writeStarted = Stopwatch.GetTimestamp();
            await WriteBackAsync(model, store, generation, keys, command.Ids, _ => null).ConfigureAwait(false);
            writeTime = Stopwatch.GetElapsedTime(writeStarted);
        }
        return new LookupResult(output.Rows, sources, model.Fingerprint,
            new RequestTimings(lookupTime, encoding.Tokenize, encoding.Queue, encoding.Inference, writeTime));
    }

    /// <summary>Cached vectors by ids or by texts; missing rows are zero-filled.</summary>
    /// <remarks><paramref name="sentAsReply"/>: as for <see cref="EmbedAsync"/>.</remarks>
    public async Task<LookupResult> GetAsync(GetCommand command, CancellationToken cancellationToken, bool sentAsReply = true)
    {
        ThrowIfStopping();
        RequestValidation.Get(command, options);
        long started = Stopwatch.GetTimestamp();
        var (model, store, _) = await ResolveAsync(command.Model, command.Kind, cancellationToken).ConfigureAwait(false);
        int count = command.Ids.Count + command.Texts.Count;
        if (sentAsReply) RequestValidation.ReplyRows(count, store.Dims, command.DType, options);
        var output = new RowWriter(count, store.Dims, command.DType);
        var found = new bool[count];
        int hits;
        if (command.Ids.Count != 0)
        {
            hits = store.GatherByIds(command.Ids, command.DType, output.Data, found);
        }
        else
        {
            var keys = new ContentKey[count];
            for (int i = 0; i < count; i++) keys[i] = ContentKey.FromText(model.TokenizerInput(command.Kind, command.Texts[i]));
            hits = store.Gather(keys, command.DType, output.Data, found);
        }
        model.Count(hits, count - hits);
        var sources = new RowSource[count];
        for (int i = 0; i < count; i++) sources[i] = found[i] ? RowSource.Cached : RowSource.Missing;
        return new LookupResult(output.Rows, sources, model.Fingerprint,
            new RequestTimings(Stopwatch.GetElapsedTime(started), default, default, default, default));
    }

    /// <summary>Stores vectors made elsewhere; an unknown model name becomes a store-only model.</summary>
    public async Task<int> PutAsync(PutCommand command, CancellationToken cancellationToken)
    {
        ThrowIfStopping();
        ThrowIfFollower("Put stores vectors");
        var rows = RequestValidation.Put(command, options);

        var model = await catalog.GetOrCreateStoreOnlyAsync(command.Model, command.Dims, command.DType, cancellationToken).ConfigureAwait(false);
        RequestValidation.PutDims(model.Name, model.Cache.Dims, command.Dims);
        var batch = new RowBatch(command.Dims, command.Count);
        for (int i = 0; i < command.Count; i++)
        {
            ContentKey? key = command.Texts.Count != 0
                ? ContentKey.FromText(model.TokenizerInput(command.Kind, command.Texts[i]))
                : null;
            batch.Add(key, command.Ids.Count != 0 ? command.Ids[i] : null, rows.AsSpan(i * command.Dims, command.Dims));
        }
        return await AppendAsync(model.Cache[command.Kind], batch, AppendMode.Overwrite, expectedGeneration: -1).ConfigureAwait(false);
    }

    /// <summary>
    /// Scores of queries against candidate documents under the model's similarity (cosine unless its folder's
    /// similarity_fn_name says otherwise), computing missing query and document vectors:
    /// documents by text are embedded (and stored under their ids when ids come too); documents by id alone
    /// must be cached.
    /// </summary>
    public async Task<ScoreResult> ScoreAsync(ScoreCommand command, CancellationToken cancellationToken)
    {
        ThrowIfStopping();
        int documentCount = RequestValidation.Score(command, options);

        using var queries = await EmbedAsync(
            new EmbedCommand(command.Model, VectorKind.Query, command.Queries, [], VectorDType.Float32, CacheOnly: false),
            cancellationToken, sentAsReply: false).ConfigureAwait(false);
        using var documents = command.DocumentTexts.Count != 0
            ? await EmbedAsync(
                new EmbedCommand(command.Model, VectorKind.Document, command.DocumentTexts, command.DocumentIds, VectorDType.Float32, CacheOnly: false),
                cancellationToken, sentAsReply: false).ConfigureAwait(false)
            : await GetAsync(
                new GetCommand(command.Model, VectorKind.Document, command.DocumentIds, [], VectorDType.Float32),
                cancellationToken, sentAsReply: false).ConfigureAwait(false);
        if (command.DocumentTexts.Count == 0)
        {
            var missing = command.DocumentIds.Where((_, i) => documents.Sources[i] == RowSource.Missing).Take(5).ToList();
            if (missing.Count > 0)
            {
                CacheRequestException.Throw(CacheErrorKind.FailedPrecondition,
                    $"{documents.CountOf(RowSource.Missing)} document ids are not cached (e.g. {string.Join(", ", missing.Select(id => $"'{id}'"))}): " +
                    "Put their vectors first, or send document_texts along with the ids so that missing ones are computed");
            }
        }

        int dims = queries.Vectors.Dims;
        var similarity = SimilarityOf(command.Model);
        var scores = SimilarityScorer.Matrix(
            MemoryMarshal.Cast<byte, float>(queries.Vectors.Data.Span),
            MemoryMarshal.Cast<byte, float>(documents.Vectors.Data.Span), dims, similarity);
        var top = new List<(int Index, float Score)[]>();
        if (command.TopK > 0 && documentCount > 0)
        {
            for (int q = 0; q < command.Queries.Count; q++)
            {
                top.Add(SimilarityScorer.Top(scores.AsSpan(q * documentCount, documentCount), command.TopK));
            }
        }
        return new ScoreResult(command.Queries.Count, documentCount, scores, queries.Sources, documents.Sources, top);
    }

    /// <summary>Drops a model's cache (one kind, or all when <paramref name="kind"/> is null) atomically.</summary>
    public async Task<InvalidationResult> InvalidateAsync(string model, VectorKind? kind, CancellationToken cancellationToken)
    {
        ThrowIfStopping();
        ThrowIfFollower("Invalidate drops vectors");
        var served = await catalog.GetAsync(model, cancellationToken).ConfigureAwait(false);
        var result = served.Cache.Invalidate(kind);
        // A researcher who swapped the model's files and invalidates expects the new files to be read.
        catalog.ReloadOnNextUse(model);
        logger.CacheInvalidated(model, kind?.ToString() ?? "all kinds", result.RowsRemoved, result.BytesRemoved);
        return result;
    }

    /// <summary>Every model known, loaded or not.</summary>
    public IReadOnlyList<ModelStatus> ListModels()
    {
        var models = new List<ModelStatus>();
        foreach (var name in catalog.KnownNames())
        {
            var loaded = catalog.Loaded(name);
            var cache = loaded?.Cache ?? root.OpenCache(name);
            bool hasFolder = BuiltInModels.IsBuiltIn(name) || Directory.Exists(Path.Combine(root.ModelsDirectory, name));
            // A model not used yet: its dims are known for the built-ins, and from its cache for the rest.
            int dims = cache?.Dims ?? (BuiltInModels.IsBuiltIn(name) ? BuiltInModels.SettingsOf(name).Dims ?? 0 : 0);
            // What the server decided from the folder: known once the model is loaded, and for the built-ins from the start.
            var definition = loaded?.Definition;
            models.Add(new ModelStatus(
                name,
                dims,
                CanCompute: hasFolder && !root.IsFollower && catalog.LoadError(name) is null,
                loaded?.Fingerprint ?? cache?.Fingerprint ?? "",
                cache?[VectorKind.Query].RowCount ?? 0,
                cache?[VectorKind.Document].RowCount ?? 0,
                cache?.ByteCount ?? 0,
                loaded?.Hits ?? 0,
                loaded?.Misses ?? 0,
                catalog.LoadError(name),
                definition?.Settings ?? (BuiltInModels.IsBuiltIn(name) ? BuiltInModels.SettingsOf(name) : null),
                definition?.OnnxFile ?? (BuiltInModels.IsBuiltIn(name) ? ModelDefinition.OnnxFileName : null)));
        }
        return models;
    }

    /// <summary>
    /// The model, the store of the kind and its generation as of now. A model retired meanwhile (its folder
    /// changed) is looked up again, so that nothing it computes lands in the cache of its successor.
    /// </summary>
    private async Task<(ServedModel Model, VectorStore Store, long Generation)> ResolveAsync(
        string name, VectorKind kind, CancellationToken cancellationToken)
    {
        while (true)
        {
            var model = await catalog.GetAsync(name, cancellationToken).ConfigureAwait(false);
            var store = model.Cache[kind];
            long generation = store.Generation;
            if (!model.Retired) return (model, store, generation);
        }
    }

    /// <summary>Indexes of the first occurrence of each distinct key that was not found.</summary>
    private static List<int> DistinctMisses(ContentKey[] keys, bool[] found)
    {
        var misses = new List<int>();
        HashSet<ContentKey>? seen = null;
        for (int i = 0; i < keys.Length; i++)
        {
            if (found[i]) continue;
            seen ??= [];
            if (seen.Add(keys[i])) misses.Add(i);
        }
        return misses;
    }

    /// <summary>
    /// Computes each key once: keys another request is computing are awaited, the rest go to the batcher
    /// as one group. A cancelled request drops its unstarted work, so whoever waited on it computes the key
    /// itself; a saturated encoder fails the waiters too. The timings are those of this request's own group.
    /// </summary>
    private async Task<(float[][] Vectors, EncodingTimings Timings)> ComputeOnceAsync(
        ServedModel model, VectorKind kind, (ContentKey Key, string Input)[] misses, CancellationToken cancellationToken)
    {
        var results = new Task<float[]>[misses.Length];
        var mine = new List<(int Index, TaskCompletionSource<float[]> Promise)>();
        for (int m = 0; m < misses.Length; m++)
        {
            var promise = new TaskCompletionSource<float[]>(TaskCreationOptions.RunContinuationsAsynchronously);
            var flight = computing.Join((model, kind, misses[m].Key), promise);
            if (flight == promise.Task) mine.Add((m, promise));
            results[m] = flight;
        }
        EncodingTimings timings = default;
        if (mine.Count > 0)
        {
            timings = await ComputeAndPublishAsync(model, kind, misses, mine, cancellationToken).ConfigureAwait(false);
        }
        var vectors = new float[misses.Length][];
        for (int m = 0; m < misses.Length; m++)
        {
            try
            {
                vectors[m] = await results[m].WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // The request computing this key was cancelled; ours was not, so compute it ourselves.
                vectors[m] = (await ComputeOnceAsync(model, kind, [misses[m]], cancellationToken).ConfigureAwait(false)).Vectors[0];
            }
        }
        return (vectors, timings);
    }

    private async Task<EncodingTimings> ComputeAndPublishAsync(
        ServedModel model, VectorKind kind, (ContentKey Key, string Input)[] misses,
        List<(int Index, TaskCompletionSource<float[]> Promise)> mine, CancellationToken cancellationToken)
    {
        try
        {
            using var lease = await model.AcquireBatcherAsync(cancellationToken).ConfigureAwait(false);
            int dims = lease.Batcher.Encoder.Dims;
            var flat = new float[mine.Count * dims];
            var timings = await lease.Batcher.EncodeTimedAsync(mine.Select(x => misses[x.Index].Input).ToArray(), flat, cancellationToken)
                .ConfigureAwait(false);
            if (model.Cache[kind].DType == VectorDType.Float16) RoundToHalf(flat);
            for (int j = 0; j < mine.Count; j++) mine[j].Promise.SetResult(flat.AsSpan(j * dims, dims).ToArray());
            return timings;
        }
        catch (OperationCanceledException e)
        {
            foreach (var (_, promise) in mine) promise.TrySetCanceled(e.CancellationToken);
            throw;
        }
        catch (EncoderSaturatedException e)
        {
            var refusal = new CacheRequestException(CacheErrorKind.ResourceExhausted,
                $"the encoder of '{model.Name}' is saturated: {e.Message} (the server's limits are EmbeddingCache:Encoder:MaxQueuedTexts and MaxQueueWait)",
                inner: e);
            // Requests waiting on these keys hear the same refusal: the queue is just as full for them.
            foreach (var (_, promise) in mine) promise.TrySetException(refusal);
            throw refusal;
        }
        catch (Exception e)
        {
            foreach (var (_, promise) in mine) promise.TrySetException(e);
            throw;
        }
        finally
        {
            foreach (var (index, promise) in mine) computing.Land((model, kind, misses[index].Key), promise.Task);
        }
    }

    /// <summary>
    /// A float16 cache keeps vectors rounded to half precision: the call that computes them gets them rounded too, so
    /// a text's vector is the same whether it was just computed or read back later.
    /// </summary>
    private static void RoundToHalf(Span<float> vectors)
    {
        var half = new Half[vectors.Length];
        TensorPrimitives.ConvertToHalf(vectors, half);
        TensorPrimitives.ConvertToSingle(half, vectors);
    }

    /// <summary>
    /// Writes computed rows, and rows whose id is not yet recorded, once per (key, id). Skipped without
    /// error when the cache was invalidated meanwhile: nothing of the old generation enters the new one.
    /// </summary>
    private async Task WriteBackAsync(
        ServedModel model, VectorStore store, long generation, ContentKey[] keys, IReadOnlyList<string> ids,
        Func<int, float[]?> computedRow)
    {
        var batch = new RowBatch(store.Dims, keys.Length);
        var written = new HashSet<(ContentKey, string?)>();
        float[]? scratch = null;
        bool[]? present = null;
        for (int i = 0; i < keys.Length; i++)
        {
            string? id = ids.Count != 0 ? ids[i] : null;
            var vector = computedRow(i);
            if (vector is null && id is null) continue;
            if (!written.Add((keys[i], id))) continue;
            if (vector is null)
            {
                // A cached row that gains an id: copy the stored float32 row, never the (maybe float16) reply.
                scratch ??= new float[store.Dims];
                present ??= new bool[1];
                store.Gather([keys[i]], VectorDType.Float32, MemoryMarshal.AsBytes(scratch.AsSpan()), present);
                if (!present[0]) continue;
                vector = scratch;
            }
            batch.Add(keys[i], id, vector);
        }
        if (batch.Count == 0) return;
        int stored = await AppendAsync(store, batch, AppendMode.IfAbsent, generation).ConfigureAwait(false);
        if (stored == 0 && store.Generation != generation) logger.WriteBackSkipped(model.Name, batch.Count);
    }

    private static async Task<int> AppendAsync(VectorStore store, RowBatch batch, AppendMode mode, long expectedGeneration)
    {
        try
        {
            return await store.AppendAsync(batch, mode, expectedGeneration).ConfigureAwait(false);
        }
        catch (StorageFullException e)
        {
            CacheRequestException.Throw(CacheErrorKind.ResourceExhausted,
                $"the disk holding the cache is full, nothing of this request was stored: {e.Message}; free space and retry", e);
            return 0;
        }
    }

    /// <summary>On a follower, refuses a write loudly, naming the writer, so that a misrouted write is never a silent second writer.</summary>
    private void ThrowIfFollower(string write)
    {
        if (!root.IsFollower) return;
        var writer = string.IsNullOrWhiteSpace(options.Follow.WriterAddress)
            ? $"no writer address is configured ({EngineOptions.SettingName("Follow:WriterAddress")})"
            : $"send writes to the writer at {options.Follow.WriterAddress}";
        CacheRequestException.Throw(CacheErrorKind.FailedPrecondition, $"this server is a read-only follower of {root.RootDirectory}; {writer} ({write})");
    }

    private void ThrowIfStopping()
    {
        if (stopping) CacheRequestException.Throw(CacheErrorKind.Unavailable, "the server is shutting down; retry on another server or after restart");
    }

    /// <summary>Stops the batchers, flushes storage and releases the artifacts root.</summary>
    public async ValueTask DisposeAsync()
    {
        stopping = true;
        if (cachesOpened.IsValueCreated)
        {
            // Storage must not be released under a recovery still running; its failure was reported by the preload.
            await cachesOpened.Value.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        await catalog.DisposeAsync().ConfigureAwait(false);
        root.Dispose();
    }

    /// <summary>Response rows being filled in the requested dtype, in a pooled buffer the result owns.</summary>
    private sealed class RowWriter(int count, int dims, VectorDType dtype)
    {
        private readonly int rowBytes = dims * dtype.BytesPerElement();

        public PackedVectors Rows { get; } = new(count, dims, dtype);

        public Span<byte> Data => Rows.Data.Span;

        public void Write(int row, ReadOnlySpan<float> vector)
        {
            var destination = Data.Slice(row * rowBytes, rowBytes);
            if (dtype == VectorDType.Float16) TensorPrimitives.ConvertToHalf(vector, MemoryMarshal.Cast<byte, Half>(destination));
            else MemoryMarshal.AsBytes(vector).CopyTo(destination);
        }
    }

    /// <summary>The measure Score uses for a model: its folder's similarity_fn_name, cosine for a store-only cache.</summary>
    private SimilarityFunction SimilarityOf(string model) =>
        catalog.Loaded(model)?.Settings?.Similarity ?? SimilarityFunction.Cosine;
}
