using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Storage;

/// <summary>
/// An artifacts directory (<c>models/</c>, <c>embeddings/</c>, <c>logs/</c>) opened by its single writer.
/// Caches are recovered lazily, on first use, from their sidecars only; opening the root reads no vectors.
/// Dispose finishes queued appends, writes manifests, releases mappings and the lock. A follower's root
/// (<see cref="OpenFollower"/>) takes no lock and writes nothing: it polls what the writer publishes.
/// </summary>
public sealed class ArtifactsRoot : IDisposable
{
    /// <summary>Name of the folder of model folders under the root.</summary>
    public const string ModelsFolderName = "models";

    /// <summary>Name of the folder of model caches under the root.</summary>
    public const string EmbeddingsFolderName = "embeddings";

    /// <summary>Name of the folder of server and bulk-job logs under the root.</summary>
    public const string LogsFolderName = "logs";

    private readonly StorageOptions _options;
    private readonly ILogger _logger;
    private readonly RootLock? _lock;
    private readonly Trash? _trash;
    private readonly CancellationTokenSource _stopPolling = new();
    private readonly HashSet<string> _reportedProblems = new(StringComparer.Ordinal);
    private Task _poller = Task.CompletedTask;
    private readonly Lock _sync = new();
    private readonly Dictionary<string, ModelCache> _caches = new(StringComparer.Ordinal);
    private bool _disposed;

    private ArtifactsRoot(string root, StorageOptions options, ILogger logger, RootLock? rootLock)
    {
        RootDirectory = root;
        ModelsDirectory = Path.Combine(root, ModelsFolderName);
        EmbeddingsDirectory = Path.Combine(root, EmbeddingsFolderName);
        LogsDirectory = Path.Combine(root, LogsFolderName);
        _options = options;
        _logger = logger;
        _lock = rootLock;
        _trash = rootLock is null ? null : new Trash(TimeSpan.FromSeconds(options.InvalidatedRetentionSeconds), logger);
    }

    /// <summary>True for a follower's root: read-only, no lock, caches follow what their writer publishes.</summary>
    public bool IsFollower => _lock is null;

    /// <summary>The root, as a full path.</summary>
    public string RootDirectory { get; }

    /// <summary><c>models/</c>: model folders (not managed by the storage engine).</summary>
    public string ModelsDirectory { get; }

    /// <summary><c>embeddings/</c>: one folder per model cache.</summary>
    public string EmbeddingsDirectory { get; }

    /// <summary><c>logs/</c>: server and bulk-job logs.</summary>
    public string LogsDirectory { get; }

    /// <summary>
    /// Opens (creating if needed) the artifacts directory and takes its single-writer lock.
    /// </summary>
    /// <exception cref="ArtifactsLockedException">Another writer holds it; the message names the holder.</exception>
    /// <exception cref="IOException">The directory cannot be written (read-only filesystem, no permission); the message says so.</exception>
    public static ArtifactsRoot Open(string rootDirectory, StorageOptions options, ILoggerFactory loggerFactory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(rootDirectory);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        options.Validate();
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("The .npy segments are little-endian and mapped as they are; big-endian machines are not supported.");
        }

        var root = Path.GetFullPath(rootDirectory);
        Directory.CreateDirectory(root);
        var copy = CopyOf(options);
        ILogger logger = loggerFactory.CreateLogger("EmbeddingCache.Storage");
        var rootLock = RootLock.Acquire(root);
        try
        {
            var artifacts = new ArtifactsRoot(root, copy, logger, rootLock);
            Directory.CreateDirectory(artifacts.ModelsDirectory);
            Directory.CreateDirectory(artifacts.EmbeddingsDirectory);
            Directory.CreateDirectory(artifacts.LogsDirectory);
            if (copy.Durability == DurabilityMode.GroupCommit)
            {
                NativeFile.SyncDirectory(root); // the folders' names, or a power cut loses every cache made under them
            }

            StorageLog.ArtifactsOpened(logger, root, Environment.ProcessId);
            return artifacts;
        }
        catch
        {
            rootLock.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens an artifacts directory that another server writes (on this disk, or a copy kept in sync by a file tool) as a
    /// read-only follower: no lock is taken and nothing is created or written under it. Every
    /// <paramref name="pollInterval"/> it reads what the writer published and serves it (see <see cref="KindFollower"/>).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist: a follower never creates it.</exception>
    public static ArtifactsRoot OpenFollower(string rootDirectory, StorageOptions options, TimeSpan pollInterval, ILoggerFactory loggerFactory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(rootDirectory);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(pollInterval, TimeSpan.Zero);
        options.Validate();
        var root = Path.GetFullPath(rootDirectory);
        if (!Directory.Exists(root))
        {
            throw new DirectoryNotFoundException($"the artifacts root {root} does not exist; a follower never creates it: start its writer first, or copy the writer's files there");
        }

        ILogger logger = loggerFactory.CreateLogger("EmbeddingCache.Storage");
        var artifacts = new ArtifactsRoot(root, CopyOf(options), logger, rootLock: null);
        artifacts._poller = Task.Run(() => artifacts.PollAsync(pollInterval, artifacts._stopPolling.Token));
        StorageLog.FollowerOpened(logger, root, (long)pollInterval.TotalMilliseconds);
        return artifacts;
    }

    private static StorageOptions CopyOf(StorageOptions options) => new StorageOptions
    {
        Durability = options.Durability,
        SegmentRows = options.SegmentRows,
        WarmBytesPerSecond = options.WarmBytesPerSecond,
        PublishIntervalMs = options.PublishIntervalMs,
        InvalidatedRetentionSeconds = options.InvalidatedRetentionSeconds,
    };

    /// <summary>True for a name that can be a model (and folder) name, by <see cref="ModelNameRule"/>.</summary>
    public static bool IsValidModelName(string? model) => ModelNameRule.Problem(model) is null;

    /// <summary>Names of the folders under <c>embeddings/</c> that hold a cache, in ordinal order.</summary>
    public IReadOnlyList<string> ListCaches()
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            var names = new SortedSet<string>(_caches.Keys, StringComparer.Ordinal);
            if (IsFollower && !Directory.Exists(EmbeddingsDirectory))
            {
                return [.. names];
            }

            foreach (var folder in Directory.EnumerateDirectories(EmbeddingsDirectory))
            {
                var name = Path.GetFileName(folder);
                if (IsValidModelName(name) && File.Exists(Path.Combine(folder, CacheManifest.FileName)))
                {
                    names.Add(name);
                }
            }

            return [.. names];
        }
    }

    /// <summary>The cache of <paramref name="model"/> if one exists (recovered on first call), else null. Same instance every call.</summary>
    /// <exception cref="ArgumentException">The name cannot be a model name.</exception>
    public ModelCache? OpenCache(string model)
    {
        ValidateModelName(model);
        lock (_sync)
        {
            ThrowIfDisposed();
            return FindOrLoad(model);
        }
    }

    /// <summary>
    /// Opens or creates the cache of <paramref name="model"/>. If it holds vectors of another fingerprint, dims
    /// or dtype, they are dropped atomically (logged with both fingerprints) and the manifest rewritten.
    /// </summary>
    public ModelCache CreateOrOpenCache(string model, CacheDescriptor descriptor)
    {
        ValidateModelName(model);
        ArgumentNullException.ThrowIfNull(descriptor);
        descriptor.Validate();
        lock (_sync)
        {
            ThrowIfDisposed();
            if (IsFollower)
            {
                throw new InvalidOperationException($"the artifacts root {RootDirectory} is followed read-only: the cache of '{model}' cannot be created or changed here");
            }

            if (FindOrLoad(model) is { } existing)
            {
                existing.Apply(descriptor);
                return existing;
            }

            var directory = Path.Combine(EmbeddingsDirectory, model);
            if (Directory.Exists(directory))
            {
                SetAsideVectorsOfUnknownOrigin(model, directory);
            }

            ModelCache cache = ModelCache.Create(model, directory, descriptor, _options, _logger, _trash!);
            _caches.Add(model, cache);
            return cache;
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _stopPolling.Cancel();
        _poller.GetAwaiter().GetResult();
        lock (_sync)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (ModelCache cache in _caches.Values)
            {
                cache.Shutdown();
            }

            _caches.Clear();
            _trash?.Dispose();
            _lock?.Dispose();
            _stopPolling.Dispose();
        }
    }

    private async Task PollAsync(TimeSpan interval, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                PollOnce();
            }
        }
        catch (OperationCanceledException)
        {
            // Disposed.
        }
    }

    /// <summary>One round of a follower: new caches appear, every cache catches up; a problem is logged once per model.</summary>
    private void PollOnce()
    {
        foreach (var name in ListCaches())
        {
            try
            {
                bool known;
                lock (_sync)
                {
                    known = _caches.ContainsKey(name);
                }

                // A cache found for the first time was brought up to date as it opened.
                ModelCache? cache = OpenCache(name);
                if (known)
                {
                    cache?.Poll();
                }

                lock (_sync)
                {
                    _reportedProblems.Remove(name);
                }
            }
            catch (Exception exception) when (exception is not OutOfMemoryException)
            {
                // Whatever the files hold, the poller must live on: a follower that stopped polling would serve stale rows forever.
                lock (_sync)
                {
                    if (_reportedProblems.Add(name))
                    {
                        StorageLog.FollowerProblem(_logger, name, "cache", exception.Message);
                    }
                }
            }
        }
    }

    private ModelCache? FindOrLoad(string model)
    {
        if (_caches.TryGetValue(model, out ModelCache? cache))
        {
            return cache;
        }

        var directory = Path.Combine(EmbeddingsDirectory, model);
        if (!Directory.Exists(directory))
        {
            return null;
        }

        var manifestPath = Path.Combine(directory, CacheManifest.FileName);
        CacheManifest? manifest = CacheManifest.TryRead(manifestPath, model, out var problem);
        if (IsFollower)
        {
            if (problem is not null)
            {
                throw new InvalidDataException($"{manifestPath}: {problem}");
            }

            if (manifest is not null)
            {
                cache = ModelCache.Follow(model, directory, manifest, _options, _logger);
                _caches.Add(model, cache);
            }

            return cache;
        }

        if (problem is not null)
        {
            Quarantine.Move(directory, model, "cache", manifestPath, $"manifest {problem}; the cache's vectors are set aside when it is next created", _logger);
        }

        if (manifest is null)
        {
            return null;
        }

        cache = ModelCache.Load(model, directory, manifest, _options, _logger, _trash!);
        _caches.Add(model, cache);
        return cache;
    }

    /// <summary>
    /// Without a readable manifest nobody knows which model made the vectors in a folder, so they may never be
    /// served; they go to quarantine (not deleted: they are the user's data).
    /// </summary>
    private void SetAsideVectorsOfUnknownOrigin(string model, string directory)
    {
        foreach (VectorKind kind in (ReadOnlySpan<VectorKind>)[VectorKind.Query, VectorKind.Document])
        {
            var kindDirectory = Path.Combine(directory, kind.Name());
            if (!Directory.Exists(kindDirectory))
            {
                continue;
            }

            if (Directory.EnumerateFiles(kindDirectory, "*" + Segment.NpySuffix).Any())
            {
                Quarantine.Move(directory, model, "cache", kindDirectory, "vectors without a readable cache manifest: their model is unknown", _logger);
            }
            else
            {
                Directory.Delete(kindDirectory, recursive: true);
            }
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private static void ValidateModelName(string model)
    {
        if (!IsValidModelName(model))
        {
            throw new ArgumentException(
                $"'{model}' is not a model name: use letters, digits, '.', '_' and '-', starting with a letter or digit, no '..', at most {ModelNameRule.MaxLength} characters.",
                nameof(model));
        }
    }
}
