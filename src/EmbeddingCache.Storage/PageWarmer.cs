using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Storage;

/// <summary>
/// Reads a cache's vector pages into memory on a background thread after it opens, at a throttled rate, so that
/// early requests do not pay a page fault (and a disk read when cold) per 4 KiB. Opening, and the server's
/// readiness, never wait for it; invalidation and shutdown stop it.
/// </summary>
internal sealed class PageWarmer
{
    private readonly string _model;
    private readonly VectorStore[] _stores;
    private readonly long _bytesPerSecond;
    private readonly ILogger _logger;
    private volatile bool _stopped;

    private PageWarmer(string model, VectorStore[] stores, long bytesPerSecond, ILogger logger)
    {
        _model = model;
        _stores = stores;
        _bytesPerSecond = bytesPerSecond;
        _logger = logger;
    }

    /// <summary>Starts warming <paramref name="stores"/> unless <paramref name="bytesPerSecond"/> is 0.</summary>
    public static PageWarmer Start(string model, VectorStore[] stores, long bytesPerSecond, ILogger logger)
    {
        var warmer = new PageWarmer(model, stores, bytesPerSecond, logger);
        if (bytesPerSecond > 0)
        {
            // A thread of its own: it sleeps to keep its rate, which would hold a pool thread hostage.
            new Thread(warmer.Run) { IsBackground = true, Priority = ThreadPriority.BelowNormal, Name = "embcache page warmer" }.Start();
        }

        return warmer;
    }

    /// <summary>Stops after the chunk being read.</summary>
    public void Stop() => _stopped = true;

    private void Run()
    {
        var total = _stores.Sum(store => store.WarmableBytes);
        StorageLog.CacheWarmingStarted(_logger, _model, total, _bytesPerSecond);
        var started = Stopwatch.GetTimestamp();

        // Chunks of at most a sixteenth of a second's budget, so that the throttle sleeps briefly and Stop is prompt.
        var chunkBytes = (int)Math.Clamp(_bytesPerSecond / 16, 4096, 1 << 20);
        long done = 0;
        foreach (VectorStore store in _stores)
        {
            var before = done;
            done += store.Warm(chunkBytes, touched => Pace(before + touched, started));
            if (_stopped)
            {
                return;
            }
        }

        StorageLog.CacheWarmed(_logger, _model, done, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    private bool Pace(long touched, long started)
    {
        TimeSpan ahead = TimeSpan.FromSeconds((double)touched / _bytesPerSecond) - Stopwatch.GetElapsedTime(started);
        if (ahead > TimeSpan.Zero && !_stopped)
        {
            Thread.Sleep(ahead);
        }

        return !_stopped;
    }
}
