using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Storage;

/// <summary>
/// The cache of one model: <c>embeddings/&lt;model&gt;/</c> with its manifest and one
/// <see cref="VectorStore"/> per kind. One instance per model per <see cref="ArtifactsRoot"/>. A follower's cache
/// (<see cref="Follow"/>) writes nothing: its poll reads the cache manifest and brings each kind up to its own.
/// </summary>
public sealed class ModelCache
{
    private readonly string _directory;
    private readonly StorageOptions _options;
    private readonly ILogger _logger;
    private readonly Trash? _trash;
    private readonly Lock _manifestLock = new();
    private readonly CacheManifest _manifest;
    private CacheDescriptor _descriptor;
    private VectorStore _query = null!;
    private VectorStore _document = null!;
    private PageWarmer? _warmer;

    private ModelCache(string name, string directory, CacheManifest manifest, StorageOptions options, ILogger logger, Trash? trash)
    {
        Name = name;
        _directory = directory;
        _manifest = manifest;
        _descriptor = manifest.ToDescriptor();
        _options = options;
        _logger = logger;
        _trash = trash;
    }

    /// <summary>The model name, which is also the folder name under <c>embeddings/</c>.</summary>
    public string Name { get; }

    /// <summary>Vector width.</summary>
    public int Dims => Volatile.Read(ref _descriptor).Dims;

    /// <summary>Storage element type.</summary>
    public VectorDType DType => Volatile.Read(ref _descriptor).DType;

    /// <summary>Fingerprint of the model that made the vectors; <c>""</c> for a store-only model.</summary>
    public string Fingerprint => Volatile.Read(ref _descriptor).Fingerprint;

    /// <summary>True when the server cannot compute this model's vectors.</summary>
    public bool StoreOnly => Volatile.Read(ref _descriptor).StoreOnly;

    /// <summary>The descriptor the cache currently holds, metadata included.</summary>
    public CacheDescriptor Descriptor => Volatile.Read(ref _descriptor);

    /// <summary>The store of one kind.</summary>
    public VectorStore this[VectorKind kind] => kind switch
    {
        VectorKind.Query => _query,
        VectorKind.Document => _document,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown vector kind."),
    };

    /// <summary>True for a follower's cache: it serves what another server writes and refuses every change.</summary>
    public bool IsFollower => _trash is null;

    /// <summary>Bytes of committed data on disk, both kinds.</summary>
    public long ByteCount => _query.ByteCount + _document.ByteCount;

    /// <summary>
    /// Drops the vectors of one kind, or of both when <paramref name="kind"/> is null. Atomic per kind: the
    /// folder is renamed aside in one step; reads running meanwhile see the old rows or none; appends of the
    /// old generation write nothing.
    /// </summary>
    public InvalidationResult Invalidate(VectorKind? kind)
    {
        InvalidationResult result = default;
        foreach (var store in Stores(kind))
        {
            var removed = store.Invalidate();
            result = new InvalidationResult(result.RowsRemoved + removed.RowsRemoved, result.BytesRemoved + removed.BytesRemoved);
        }

        TryWriteManifest();
        return result;
    }

    internal static ModelCache Load(string name, string directory, CacheManifest manifest, StorageOptions options, ILogger logger, Trash trash)
    {
        var started = Stopwatch.GetTimestamp();
        DeleteInterruptedManifest(directory, logger);
        var cache = new ModelCache(name, directory, manifest, options, logger, trash);
        cache.OpenStores();
        trash.Sweep(directory); // after the stores read the generations the trash folders' names record
        cache.TryWriteManifest();
        var elapsedMs = (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        var indexBytes = cache._query.IndexBytes + cache._document.IndexBytes;
        long entries = Math.Max(cache._query.KeyCount, cache._query.IdCount) + Math.Max(cache._document.KeyCount, cache._document.IdCount);
        StorageLog.CacheOpened(logger, name, cache._query.RowCount, cache._document.RowCount,
            cache._query.SegmentCount + cache._document.SegmentCount, elapsedMs, indexBytes, entries == 0 ? 0 : Math.Round((double)indexBytes / entries, 1));
        if (entries > 0)
        {
            cache._warmer = PageWarmer.Start(name, [cache._document.Generations, cache._query.Generations], options.WarmBytesPerSecond, logger);
        }
        return cache;
    }

    /// <summary>A follower's cache of <paramref name="name"/>, brought up to what its writer published; it writes nothing.</summary>
    internal static ModelCache Follow(string name, string directory, CacheManifest manifest, StorageOptions options, ILogger logger)
    {
        var cache = new ModelCache(name, directory, manifest, options, logger, trash: null);
        var layout = new NpyLayout(manifest.Dims, manifest.DType);
        cache._query = VectorStore.Follow(name, VectorKind.Query, directory, layout, options, logger);
        cache._document = VectorStore.Follow(name, VectorKind.Document, directory, layout, options, logger);
        cache.Poll();
        return cache;
    }

    /// <summary>
    /// On a follower: reads the cache manifest, brings both kinds up to their manifests, then takes the cache manifest's
    /// descriptor. The writer resets the kinds before it rewrites a changed cache manifest, so a new fingerprint is
    /// taken only once the kinds serve generations at least as new as the reset.
    /// </summary>
    internal void Poll()
    {
        CacheManifest? manifest = CacheManifest.TryRead(Path.Combine(_directory, CacheManifest.FileName), Name, out _);
        _query.Poll();
        _document.Poll();
        if (manifest is not null)
        {
            Volatile.Write(ref _descriptor, manifest.ToDescriptor());
        }
    }

    internal static ModelCache Create(string name, string directory, CacheDescriptor descriptor, StorageOptions options, ILogger logger, Trash trash)
    {
        Directory.CreateDirectory(directory);
        var manifest = new CacheManifest
        {
            ModelName = name,
            Dims = descriptor.Dims,
            DType = descriptor.DType,
            Fingerprint = descriptor.Fingerprint,
            StoreOnly = descriptor.StoreOnly,
            BaseModel = descriptor.BaseModel,
            HuggingFaceUrl = descriptor.HuggingFaceUrl,
        };
        var cache = new ModelCache(name, directory, manifest, options, logger, trash);
        cache.OpenStores();
        try
        {
            cache.WriteManifest();
        }
        catch
        {
            // A disk full at creation: no manifest, so no cache; its stores must not keep running unowned.
            cache._query.Shutdown();
            cache._document.Shutdown();
            throw;
        }
        NativeFile.SyncDirectory(Path.GetDirectoryName(directory)!);
        StorageLog.CacheCreated(logger, name, descriptor.Dims, descriptor.DType.NpyDescr(), descriptor.Fingerprint);
        return cache;
    }

    /// <summary>
    /// Makes the cache hold <paramref name="descriptor"/>. Vectors made by another model (fingerprint), or of
    /// another shape or type, are dropped first; the manifest is rewritten after, so a crash in between
    /// leaves an old fingerprint over empty folders, never new fingerprint over old vectors.
    /// </summary>
    internal void Apply(CacheDescriptor descriptor)
    {
        var current = Descriptor;
        if (current.Fingerprint != descriptor.Fingerprint || current.Dims != descriptor.Dims || current.DType != descriptor.DType)
        {
            var layout = new NpyLayout(descriptor.Dims, descriptor.DType);
            var rowsRemoved = _query.Reset(layout).RowsRemoved + _document.Reset(layout).RowsRemoved;
            StorageLog.FingerprintChanged(_logger, Name, current.Fingerprint, descriptor.Fingerprint, current.Dims, descriptor.Dims,
                current.DType.NpyDescr(), descriptor.DType.NpyDescr(), rowsRemoved);
        }
        else if (current.StoreOnly == descriptor.StoreOnly && current.BaseModel == descriptor.BaseModel && current.HuggingFaceUrl == descriptor.HuggingFaceUrl)
        {
            return;
        }

        lock (_manifestLock)
        {
            _manifest.Dims = descriptor.Dims;
            _manifest.DType = descriptor.DType;
            _manifest.Fingerprint = descriptor.Fingerprint;
            _manifest.StoreOnly = descriptor.StoreOnly;
            _manifest.BaseModel = descriptor.BaseModel;
            _manifest.HuggingFaceUrl = descriptor.HuggingFaceUrl;
            Volatile.Write(ref _descriptor, _manifest.ToDescriptor());
        }

        WriteManifest();
    }

    internal void WriteManifest()
    {
        lock (_manifestLock)
        {
            _manifest.Write(Path.Combine(_directory, CacheManifest.FileName), _query.RowCount, _document.RowCount, ByteCount, _options.SegmentRows, _options.Durability == DurabilityMode.GroupCommit);
        }
    }

    /// <summary>Manifest writes are bookkeeping: a failure is logged and never fails the operation that triggered it.</summary>
    internal void TryWriteManifest()
    {
        try
        {
            WriteManifest();
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            StorageLog.ManifestNotWritten(_logger, exception, Name);
        }
    }

    internal void Shutdown()
    {
        _warmer?.Stop();
        _query.Shutdown();
        _document.Shutdown();
        if (!IsFollower)
        {
            TryWriteManifest();
        }
    }

    private static void DeleteInterruptedManifest(string directory, ILogger logger)
    {
        var interruptedManifest = Path.Combine(directory, CacheManifest.FileName + AtomicFile.TemporarySuffix);
        if (File.Exists(interruptedManifest))
        {
            File.Delete(interruptedManifest); // a manifest write cut short; the previous manifest is intact
            StorageLog.TemporaryFileDeleted(logger, Path.GetFileName(directory), Path.GetFileName(interruptedManifest));
        }
    }

    private void OpenStores()
    {
        var layout = new NpyLayout(_manifest.Dims, _manifest.DType);
        // A store reports its checkpoints through this callback, so that calls run from the cache to its stores only.
        _query = VectorStore.Open(Name, VectorKind.Query, _directory, layout, _options, _logger, _trash!, TryWriteManifest);
        _document = VectorStore.Open(Name, VectorKind.Document, _directory, layout, _options, _logger, _trash!, TryWriteManifest);
    }

    private IEnumerable<VectorStore> Stores(VectorKind? kind) => kind switch
    {
        null => [_query, _document],
        VectorKind k => [this[k]],
    };
}
