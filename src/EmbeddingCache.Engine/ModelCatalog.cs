using System.Collections.Concurrent;
using System.Diagnostics;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Engine;

/// <summary>
/// Every model the server knows: folders under models/, the built-ins (provisioned on first use) and
/// store-only caches under embeddings/. Models load lazily, once, and stay loaded.
/// </summary>
internal sealed class ModelCatalog(ArtifactsRoot root, EngineOptions options, ILoggerFactory loggerFactory) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, ModelSlot> slots = new(StringComparer.Ordinal);
    private readonly ILogger logger = loggerFactory.CreateLogger("EmbeddingCache.Engine.ModelCatalog");

    /// <summary>Names of every model folder, built-in model and cache, sorted.</summary>
    public IReadOnlyList<string> KnownNames()
    {
        var names = new SortedSet<string>(StringComparer.Ordinal);
        names.UnionWith(BuiltInModels.Names);
        names.UnionWith(root.ListCaches());
        if (Directory.Exists(root.ModelsDirectory))
        {
            foreach (var dir in Directory.EnumerateDirectories(root.ModelsDirectory))
            {
                string name = Path.GetFileName(dir);
                if (ModelName.Problem(name) is null) names.Add(name);
            }
        }
        return [.. names];
    }

    /// <summary>The model if it is loaded already, without loading it.</summary>
    public ServedModel? Loaded(string name) => slots.TryGetValue(name, out var slot) ? slot.Model : null;

    /// <summary>Why the model last failed to load, if it did.</summary>
    public string? LoadError(string name) => slots.TryGetValue(name, out var slot) ? slot.Error : null;

    /// <summary>Loads (once) and returns a known model; NOT_FOUND for an unknown name.</summary>
    public Task<ServedModel> GetAsync(string name, CancellationToken cancellationToken) =>
        GetOrCreateAsync(name, storeOnlyDims: null, cancellationToken);

    /// <summary>As <see cref="GetAsync"/>, but an unknown name becomes a store-only model of <paramref name="dims"/>.</summary>
    public Task<ServedModel> GetOrCreateStoreOnlyAsync(string name, int dims, CancellationToken cancellationToken) =>
        GetOrCreateAsync(name, dims, cancellationToken);

    private async Task<ServedModel> GetOrCreateAsync(string name, int? storeOnlyDims, CancellationToken cancellationToken)
    {
        ModelName.Validate(name);
        var slot = slots.GetOrAdd(name, _ => new ModelSlot());
        if (slot.Model is { } ready) return ready;

        await slot.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (slot.Model is { } loaded) return loaded;
            slot.Model = Load(name, storeOnlyDims);
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

    private ServedModel Load(string name, int? storeOnlyDims)
    {
        string folder = Path.Combine(root.ModelsDirectory, name);
        if (BuiltInModels.IsBuiltIn(name) || Directory.Exists(folder))
        {
            return LoadComputable(name, folder);
        }
        if (root.OpenCache(name) is { } existing)
        {
            return new ServedModel(name, existing, definition: null, batcher: null);
        }
        if (storeOnlyDims is int dims)
        {
            var cache = root.CreateOrOpenCache(name, new CacheDescriptor { Dims = dims, Fingerprint = "", StoreOnly = true });
            logger.StoreOnlyModelCreated(name, dims);
            return new ServedModel(name, cache, definition: null, batcher: null);
        }
        CacheRequestException.Throw(CacheErrorKind.NotFound,
            $"unknown model '{name}': there is no folder models/{name} and no cache embeddings/{name} " +
            $"under the artifacts root; known models: {string.Join(", ", KnownNames())}");
        return null;
    }

    private ServedModel LoadComputable(string name, string folder)
    {
        TextEncoder? encoder = null;
        try
        {
            if (BuiltInModels.IsBuiltIn(name)) BuiltInModels.Provision(root.ModelsDirectory, name);
            var definition = ModelDefinition.Load(folder);
            encoder = TextEncoder.Load(definition, options.Encoder, loggerFactory);
            var cache = root.CreateOrOpenCache(name, new CacheDescriptor
            {
                Dims = encoder.Dims,
                Fingerprint = definition.Fingerprint,
                BaseModel = definition.Settings.BaseModel,
                HuggingFaceUrl = definition.Settings.HuggingFaceUrl,
            });
            var started = Stopwatch.GetTimestamp();
            encoder.Warmup();
            logger.ModelLoaded(name, encoder.Dims, definition.Fingerprint, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return new ServedModel(name, cache, definition, new EncodingBatcher(encoder, options.Encoder, loggerFactory));
        }
        catch (Exception e) when (e is ModelFolderException or IOException or InvalidDataException
                                      or Microsoft.ML.OnnxRuntime.OnnxRuntimeException)
        {
            encoder?.Dispose();
            logger.ModelLoadFailed(name, e.Message);
            CacheRequestException.Throw(CacheErrorKind.FailedPrecondition,
                $"model '{name}' cannot be loaded from models/{name}: {e.Message}", e);
            return null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var slot in slots.Values)
        {
            if (slot.Model?.Batcher is { } batcher)
            {
                await batcher.DisposeAsync().ConfigureAwait(false);
                batcher.Encoder.Dispose();
            }
        }
        slots.Clear();
    }

    private sealed class ModelSlot
    {
        public SemaphoreSlim Gate { get; } = new(1, 1);
        public volatile ServedModel? Model;
        public volatile string? Error;
    }
}
