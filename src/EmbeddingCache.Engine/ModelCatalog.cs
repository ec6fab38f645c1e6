using System.Collections.Concurrent;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Engine;

/// <summary>
/// Every model the server knows: folders under models/, the built-ins (provisioned on first use) and
/// store-only caches under embeddings/. A model is read once and served until its folder changes on disk;
/// then the next request reads it again and, if its fingerprint changed, the old vectors are dropped
/// before anything of the new model is served. On a follower it creates and provisions nothing and loads no encoder:
/// it serves the caches the writer publishes, with the prefix rule of each model's folder (or built-in definition).
/// </summary>
internal sealed class ModelCatalog : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, ModelSlot> slots = new(StringComparer.Ordinal);
    private readonly ArtifactsRoot root;
    private readonly EngineOptions options;
    private readonly ILoggerFactory loggerFactory;
    private readonly ILogger logger;
    private readonly FileSystemWatcher? watcher;
    private readonly CancellationTokenSource stopping = new();
    private readonly Task idleUnloader;

    public ModelCatalog(ArtifactsRoot root, EngineOptions options, ILoggerFactory loggerFactory)
    {
        this.root = root;
        this.options = options;
        this.loggerFactory = loggerFactory;
        logger = loggerFactory.CreateLogger("EmbeddingCache.Engine.ModelCatalog");
        idleUnloader = UnloadIdleEncodersAsync(stopping.Token);
        if (root.IsFollower) return; // reads a model's folder once; it never creates one
        Directory.CreateDirectory(root.ModelsDirectory);
        // Any change under models/<name>/ makes the next request for <name> read the folder again.
        watcher = new FileSystemWatcher(root.ModelsDirectory) { IncludeSubdirectories = true };
        watcher.Changed += (_, e) => MarkChanged(e.FullPath);
        watcher.Created += (_, e) => MarkChanged(e.FullPath);
        watcher.Deleted += (_, e) => MarkChanged(e.FullPath);
        watcher.Renamed += (_, e) =>
        {
            MarkChanged(e.OldFullPath);
            MarkChanged(e.FullPath);
        };
        watcher.Error += (_, _) => MarkAllChanged();
        watcher.EnableRaisingEvents = true;
    }

    /// <summary>Names of every model folder, built-in model and cache, sorted.</summary>
    public IReadOnlyList<string> KnownNames()
    {
        var names = new SortedSet<string>(StringComparer.Ordinal);
        // A follower serves caches only: a built-in model or a folder without one is nothing it can serve.
        if (!root.IsFollower) names.UnionWith(BuiltInModels.Names);
        names.UnionWith(root.ListCaches());
        if (root.IsFollower) return [.. names];
        foreach (var dir in Directory.EnumerateDirectories(root.ModelsDirectory))
        {
            var name = Path.GetFileName(dir);
            if (ModelName.Problem(name) is null) names.Add(name);
        }
        return [.. names];
    }

    /// <summary>The model if it is loaded already, without loading it.</summary>
    public ServedModel? Loaded(string name) => slots.TryGetValue(name, out var slot) ? slot.Model : null;

    /// <summary>Why the model last failed to load, if it did.</summary>
    public string? LoadError(string name) => slots.TryGetValue(name, out var slot) ? slot.Error : null;

    /// <summary>Reads a known model (once, and again after its folder changed); NOT_FOUND for an unknown name.</summary>
    public Task<ServedModel> GetAsync(string name, CancellationToken cancellationToken) =>
        GetOrCreateAsync(name, storeOnly: null, cancellationToken);

    /// <summary>
    /// As <see cref="GetAsync"/>, but an unknown name becomes a store-only model of <paramref name="dims"/>, stored as
    /// <paramref name="dtype"/> (the first Put decides: float16 vectors make a '&lt;f2' cache).
    /// </summary>
    public Task<ServedModel> GetOrCreateStoreOnlyAsync(string name, int dims, VectorDType dtype, CancellationToken cancellationToken) =>
        GetOrCreateAsync(name, new StoreOnlyShape(dims, dtype), cancellationToken);

    /// <summary>Makes the next request read the model's folder again (Invalidate does this).</summary>
    public void ReloadOnNextUse(string name)
    {
        if (slots.TryGetValue(name, out var slot)) slot.Changed = true;
    }

    private void MarkChanged(string path)
    {
        var relative = Path.GetRelativePath(root.ModelsDirectory, path);
        var separator = relative.IndexOf(Path.DirectorySeparatorChar);
        var name = separator < 0 ? relative : relative[..separator];
        ReloadOnNextUse(name);
    }

    private void MarkAllChanged()
    {
        foreach (var slot in slots.Values) slot.Changed = true;
    }

    private async Task<ServedModel> GetOrCreateAsync(string name, StoreOnlyShape? storeOnly, CancellationToken cancellationToken)
    {
        ModelName.Validate(name);
        var slot = slots.GetOrAdd(name, _ => new ModelSlot());
        if (slot.Model is { } ready && !slot.Changed && !ready.Retired) return ready;

        await slot.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (slot.Model is { } loaded && !slot.Changed && !loaded.Retired) return loaded;
            // Cleared before reading, so a change made while we read is seen by the next request.
            slot.Changed = false;
            slot.Model = Load(name, slot.Model, storeOnly);
            slot.Error = null;
            return slot.Model;
        }
        catch (CacheRequestException e) when (e.Kind == CacheErrorKind.FailedPrecondition)
        {
            slot.Error = e.Message;
            throw;
        }
        finally
        {
            slot.Gate.Release();
        }
    }

    private ServedModel Load(string name, ServedModel? current, StoreOnlyShape? storeOnly)
    {
        var folder = Path.Combine(root.ModelsDirectory, name);
        if (root.IsFollower) return LoadFollowed(name, folder);
        if (BuiltInModels.IsBuiltIn(name) || Directory.Exists(folder))
        {
            return LoadFolder(name, folder, current);
        }
        if (current is { CanCompute: false }) return current;
        if (current is { Retired: false }) Retire(current, "its folder was removed");
        if (root.OpenCache(name) is { } existing)
        {
            return new ServedModel(name, existing, definition: null, loadedEncoder: null, options.Encoder, loggerFactory);
        }
        if (storeOnly is { } shape)
        {
            ModelCache cache;
            try
            {
                cache = root.CreateOrOpenCache(name, new CacheDescriptor { Dims = shape.Dims, DType = shape.DType, Fingerprint = "", StoreOnly = true });
            }
            catch (StorageFullException e)
            {
                CacheRequestException.Throw(CacheErrorKind.ResourceExhausted,
                    $"the disk holding the cache is full, so the cache of '{name}' could not be created: {e.Message}", e);
                return null;
            }
            logger.StoreOnlyModelCreated(name, shape.Dims, NpyName(shape.DType));
            return new ServedModel(name, cache, definition: null, loadedEncoder: null, options.Encoder, loggerFactory);
        }
        CacheRequestException.Throw(CacheErrorKind.NotFound,
            $"unknown model '{name}': there is no folder models/{name} and no cache embeddings/{name} " +
            $"under the artifacts root; known models: {string.Join(", ", KnownNames())}");
        return null;
    }

    private ServedModel LoadFolder(string name, string folder, ServedModel? current)
    {
        TextEncoder? encoder = null;
        try
        {
            if (BuiltInModels.IsBuiltIn(name)) BuiltInModels.Provision(root.ModelsDirectory, name);
            var definition = ModelDefinition.Load(folder);
            var existing = root.OpenCache(name);
            var sameModelCache = existing is not null && existing.Fingerprint == definition.Fingerprint ? existing : null;
            var dtype = StorageDType(name, definition.Settings, sameModelCache);
            // A model retired while its folder could not be read is never handed out again: its encoder is being
            // released, and every request would find it retired and ask again.
            if (current is { Retired: false } && current.Definition?.Fingerprint == definition.Fingerprint)
            {
                // The same model: only its cache's storage dtype may follow a changed storage_dtype, once it is empty.
                if (sameModelCache is not null && sameModelCache.DType != dtype) root.CreateOrOpenCache(name, Describe(definition, sameModelCache.Dims, dtype));
                return current;
            }

            // Dims come from the model's output; a cache made by this very model already knows them.
            int dims;
            if (sameModelCache is not null)
            {
                dims = sameModelCache.Dims;
            }
            else
            {
                encoder = TextEncoder.Load(definition, options.Encoder, loggerFactory);
                encoder.Warmup();
                dims = encoder.Dims;
            }
            if (current is { Retired: false }) Retire(current, $"its fingerprint changed from {current.Fingerprint} to {definition.Fingerprint}");
            var cache = root.CreateOrOpenCache(name, Describe(definition, dims, dtype));
            logger.ModelLoaded(name, dims, definition.Fingerprint);
            return new ServedModel(name, cache, definition, encoder, options.Encoder, loggerFactory);
        }
        catch (Exception e) when (e is ModelFolderException or IOException or InvalidDataException or UnauthorizedAccessException
                                      or Microsoft.ML.OnnxRuntime.OnnxRuntimeException)
        {
            encoder?.Dispose();
            logger.ModelLoadFailed(name, e.Message);
            if (current is { CanCompute: true, Retired: false }) Retire(current, "its folder cannot be read any more");
            CacheRequestException.Throw(CacheErrorKind.FailedPrecondition,
                $"model '{name}' cannot be loaded from models/{name}: {e.Message}", e);
            return null;
        }
    }

    /// <summary>
    /// A follower's model: the cache its writer publishes, and the prefix rule its texts are hashed with, from
    /// models/&lt;name&gt; if the follower sees it, else from the built-in definition; none for a store-only cache.
    /// </summary>
    private ServedModel LoadFollowed(string name, string folder)
    {
        var cache = root.OpenCache(name);
        if (cache is null)
        {
            CacheRequestException.Throw(CacheErrorKind.NotFound,
                $"unknown model '{name}': this read-only follower of {root.RootDirectory} sees no cache embeddings/{name} (yet); " +
                $"models it serves: {string.Join(", ", KnownNames())}");
        }
        ModelSettings? settings = null;
        string? unknownTextRule = null;
        if (Directory.Exists(folder))
        {
            try
            {
                settings = ModelDefinition.Load(folder).Settings;
            }
            catch (Exception e) when (e is ModelFolderException or IOException or UnauthorizedAccessException)
            {
                unknownTextRule = $"texts of model '{name}' cannot be looked up on this follower: models/{name} cannot be read ({e.Message}), " +
                                  "so the prefix its texts are hashed with is unknown; look rows up by id";
            }
        }
        else if (BuiltInModels.IsBuiltIn(name))
        {
            settings = BuiltInModels.SettingsOf(name);
        }
        else if (!cache!.StoreOnly)
        {
            unknownTextRule = $"texts of model '{name}' cannot be looked up on this follower: it has no folder models/{name}, so the prefix " +
                              "its texts are hashed with is unknown; look rows up by id, or copy the model folder next to the cache";
        }
        return ServedModel.Followed(name, cache!, settings, unknownTextRule, options.Encoder, loggerFactory);
    }

    private static CacheDescriptor Describe(ModelDefinition definition, int dims, VectorDType dtype) => new()
    {
        Dims = dims,
        DType = dtype,
        Fingerprint = definition.Fingerprint,
        BaseModel = definition.Settings.BaseModel,
        HuggingFaceUrl = definition.Settings.HuggingFaceUrl,
    };

    /// <summary>
    /// The dtype the model's cache is kept in: the folder's storage_dtype, except that a cache of this very model that
    /// already holds rows in the other dtype keeps them (a changed setting must not drop vectors that may have been
    /// stored under ids nobody can recompute); the new dtype applies once that cache is invalidated.
    /// </summary>
    private VectorDType StorageDType(string name, ModelSettings settings, ModelCache? sameModelCache)
    {
        var asked = settings.StoreFloat16 ? VectorDType.Float16 : VectorDType.Float32;
        if (sameModelCache is null || sameModelCache.DType == asked) return asked;
        var rows = sameModelCache[VectorKind.Query].RowCount + sameModelCache[VectorKind.Document].RowCount;
        if (rows == 0) return asked;
        logger.StorageDTypeKept(name, NpyName(asked), rows, NpyName(sameModelCache.DType));
        return sameModelCache.DType;
    }

    private static string NpyName(VectorDType dtype) => dtype == VectorDType.Float16 ? "float16" : "float32";

    /// <summary>What the first Put of an unknown model makes it: its width and storage dtype.</summary>
    private readonly record struct StoreOnlyShape(int Dims, VectorDType DType);

    /// <summary>Before the cache is reset: requests that looked the old model up take the new one instead.</summary>
    private void Retire(ServedModel model, string reason)
    {
        logger.ModelChanged(model.Name, reason);
        model.Retire();
    }

    private async Task UnloadIdleEncodersAsync(CancellationToken cancellationToken)
    {
        var idleFor = options.UnloadIdleEncodersAfter;
        if (idleFor <= TimeSpan.Zero) return;
        using var timer = new PeriodicTimer(TimeSpan.FromTicks(Math.Max(idleFor.Ticks / 4, TimeSpan.TicksPerSecond)));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                foreach (var slot in slots.Values)
                {
                    if (slot.Model is { } model && await model.UnloadIfIdleAsync(idleFor).ConfigureAwait(false))
                    {
                        logger.EncoderUnloaded(model.Name, idleFor);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Shutting down.
        }
    }

    public async ValueTask DisposeAsync()
    {
        watcher?.Dispose();
        await stopping.CancelAsync().ConfigureAwait(false);
        await idleUnloader.ConfigureAwait(false);
        foreach (var slot in slots.Values)
        {
            if (slot.Model is { } model) await model.DisposeAsync().ConfigureAwait(false);
        }
        slots.Clear();
        stopping.Dispose();
    }

    private sealed class ModelSlot
    {
        public SemaphoreSlim Gate { get; } = new(1, 1);
        public volatile ServedModel? Model;
        public volatile string? Error;
        public volatile bool Changed;
    }
}
