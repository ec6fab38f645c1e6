using System.Diagnostics;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Engine;

/// <summary>
/// One model as the engine serves it: its cache and, for a model folder, its definition and an encoder that
/// is loaded on the first miss (hits never need ONNX Runtime) and can be unloaded when idle. Store-only
/// models (vectors made elsewhere) have a cache and nothing else. When the folder changes on disk the
/// catalog retires this instance and serves a new one; a retired instance finishes what it started.
/// </summary>
internal sealed class ServedModel : IAsyncDisposable
{
    private readonly EncoderOptions encoderOptions;
    private readonly ILoggerFactory loggerFactory;
    private readonly SemaphoreSlim encoderGate = new(1, 1);
    private readonly TaskCompletionSource drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private EncodingBatcher? batcher;
    private int users;
    private long lastUsed = Stopwatch.GetTimestamp();
    private long hits;
    private long misses;
    private volatile bool retired;
    // On a follower: the settings whose prefixes make its texts' tokenizer inputs, or why they are unknown.
    private readonly ModelSettings? followedSettings;
    private readonly string? unknownTextRule;

    public ServedModel(string name, ModelCache cache, ModelDefinition? definition, TextEncoder? loadedEncoder,
        EncoderOptions encoderOptions, ILoggerFactory loggerFactory)
    {
        Name = name;
        Cache = cache;
        Definition = definition;
        this.encoderOptions = encoderOptions;
        this.loggerFactory = loggerFactory;
        if (loadedEncoder is not null) batcher = new EncodingBatcher(loadedEncoder, encoderOptions, loggerFactory);
    }

    /// <summary>
    /// A model served by a follower: its cache and the settings its texts are prefixed by (null for a store-only cache,
    /// whose texts have no prefix), or, with <paramref name="unknownTextRule"/>, why texts cannot be looked up. No encoder,
    /// ever: a follower computes nothing.
    /// </summary>
    public static ServedModel Followed(string name, ModelCache cache, ModelSettings? settings, string? unknownTextRule,
        EncoderOptions encoderOptions, ILoggerFactory loggerFactory) =>
        new(name, cache, settings, unknownTextRule, encoderOptions, loggerFactory);

    private ServedModel(string name, ModelCache cache, ModelSettings? settings, string? unknownTextRule,
        EncoderOptions encoderOptions, ILoggerFactory loggerFactory)
        : this(name, cache, definition: null, loadedEncoder: null, encoderOptions, loggerFactory)
    {
        followedSettings = settings;
        this.unknownTextRule = unknownTextRule;
    }

    public string Name { get; }
    public ModelCache Cache { get; }
    public ModelDefinition? Definition { get; }
    public bool CanCompute => Definition is not null;

    /// <summary>The model's settings: its folder's, or on a follower the ones its prefixes were read from; null for store-only.</summary>
    public ModelSettings? Settings => Definition?.Settings ?? followedSettings;
    public string Fingerprint => Definition?.Fingerprint ?? Cache.Fingerprint;
    public long Hits => Interlocked.Read(ref hits);
    public long Misses => Interlocked.Read(ref misses);

    /// <summary>Set before the cache is reset for a changed model: a request that sees it looks the model up again.</summary>
    public bool Retired => retired;

    /// <summary>The exact string fed to the tokenizer (and hashed into the content key) for a text of a kind.</summary>
    /// <exception cref="CacheRequestException">A follower without the model's folder: its prefix rule is unknown.</exception>
    public string TokenizerInput(VectorKind kind, string text)
    {
        if (unknownTextRule is not null) CacheRequestException.Throw(CacheErrorKind.FailedPrecondition, unknownTextRule);
        if (followedSettings is { } settings)
        {
            string prefix = kind == VectorKind.Query ? settings.QueryPrefix : settings.DocumentPrefix;
            return prefix.Length == 0 ? text : string.Concat(prefix, text);
        }
        return TokenizerInputOf(Definition, kind, text);
    }

    /// <summary>The rule of <see cref="TokenizerInput"/>, for a model's definition (null for a store-only model).</summary>
    public static string TokenizerInputOf(ModelDefinition? definition, VectorKind kind, string text)
    {
        string prefix = definition?.PrefixFor(kind == VectorKind.Query) ?? "";
        return prefix.Length == 0 ? text : string.Concat(prefix, text);
    }

    public void Count(int hitCount, int missCount)
    {
        if (hitCount > 0) Interlocked.Add(ref hits, hitCount);
        if (missCount > 0) Interlocked.Add(ref misses, missCount);
    }

    /// <summary>The batcher, loading and warming the encoder first if it is not loaded; release the lease when done.</summary>
    public async Task<BatcherLease> AcquireBatcherAsync(CancellationToken cancellationToken)
    {
        await encoderGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (batcher is null)
            {
                var encoder = TextEncoder.Load(Definition!, encoderOptions, loggerFactory);
                try
                {
                    encoder.Warmup();
                }
                catch
                {
                    encoder.Dispose();
                    throw;
                }
                Volatile.Write(ref batcher, new EncodingBatcher(encoder, encoderOptions, loggerFactory));
            }
            Interlocked.Increment(ref users);
            return new BatcherLease(this, batcher);
        }
        finally
        {
            encoderGate.Release();
        }
    }

    /// <summary>Unloads the encoder if nobody used it for <paramref name="idleFor"/>; the cache keeps serving hits.</summary>
    public async Task<bool> UnloadIfIdleAsync(TimeSpan idleFor)
    {
        if (!await encoderGate.WaitAsync(0).ConfigureAwait(false)) return false;
        try
        {
            if (batcher is null || Volatile.Read(ref users) != 0) return false;
            if (Stopwatch.GetElapsedTime(Interlocked.Read(ref lastUsed)) < idleFor) return false;
            await DisposeBatcherAsync().ConfigureAwait(false);
            return true;
        }
        finally
        {
            encoderGate.Release();
        }
    }

    /// <summary>Stops serving new work; the encoder is released once the requests that hold it are done.</summary>
    public void Retire()
    {
        retired = true;
        if (Volatile.Read(ref users) == 0) drained.TrySetResult();
        _ = DisposeWhenDrainedAsync();
    }

    private async Task DisposeWhenDrainedAsync()
    {
        await drained.Task.ConfigureAwait(false);
        await DisposeAsync().ConfigureAwait(false);
    }

    private void Release()
    {
        Interlocked.Exchange(ref lastUsed, Stopwatch.GetTimestamp());
        if (Interlocked.Decrement(ref users) == 0 && retired) drained.TrySetResult();
    }

    private async Task DisposeBatcherAsync()
    {
        var current = Interlocked.Exchange(ref batcher, null);
        if (current is null) return;
        await current.DisposeAsync().ConfigureAwait(false);
        current.Encoder.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        await encoderGate.WaitAsync().ConfigureAwait(false);
        try
        {
            await DisposeBatcherAsync().ConfigureAwait(false);
        }
        finally
        {
            encoderGate.Release();
        }
    }

    /// <summary>Use of the batcher by one request; the encoder is not unloaded while a lease is held.</summary>
    internal readonly struct BatcherLease(ServedModel owner, EncodingBatcher batcher) : IDisposable
    {
        public EncodingBatcher Batcher { get; } = batcher;

        public void Dispose() => owner.Release();
    }
}
