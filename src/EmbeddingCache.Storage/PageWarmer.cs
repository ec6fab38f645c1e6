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
    private readonly GenerationGuard[] _kinds;
    private readonly long _bytesPerSecond;
    private readonly ILogger _logger;
    private volatile bool _stopped;

    private PageWarmer(string model, GenerationGuard[] kinds, long bytesPerSecond, ILogger logger)
    {
        _model = model;
        _kinds = kinds;
        _bytesPerSecond = bytesPerSecond;
        _logger = logger;
    }

    /// <summary>Starts warming the current generation of each of <paramref name="kinds"/>, in order, unless <paramref name="bytesPerSecond"/> is 0.</summary>
    public static PageWarmer Start(string model, GenerationGuard[] kinds, long bytesPerSecond, ILogger logger)
    {
        var warmer = new PageWarmer(model, kinds, bytesPerSecond, logger);
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
        var total = _kinds.Sum(kind => kind.Current.WarmableBytes);
        StorageLog.CacheWarmingStarted(_logger, _model, total, _bytesPerSecond);
        var started = Stopwatch.GetTimestamp();

        // Chunks of at most a sixteenth of a second's budget, so that the throttle sleeps briefly and Stop is prompt.
        var chunkBytes = (int)Math.Clamp(_bytesPerSecond / 16, 4096, 1 << 20);
        long done = 0;
        foreach (var kind in _kinds)
        {
            done += Warm(kind.Current, chunkBytes, done, started);
            if (_stopped)
            {
                return;
            }
        }

        StorageLog.CacheWarmed(_logger, _model, done, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    /// <summary>
    /// Touches every page of the committed rows of <paramref name="generation"/>, a chunk at a time. Each chunk is read
    /// inside the generation like a Gather, so invalidation and shutdown never unmap a segment under it; once the
    /// generation is retired, or the warmer is stopped, it stops.
    /// </summary>
    /// <returns>Bytes touched.</returns>
    private long Warm(StoreGeneration generation, int chunkBytes, long before, long started)
    {
        long touched = 0;
        var sink = 0;
        foreach (var segment in generation.Segments)
        {
            var end = segment.Layout.FileLength(segment.Rows);
            for (long offset = 0; offset < end; offset += chunkBytes)
            {
                var length = (int)Math.Min(chunkBytes, end - offset);
                if (!generation.TryEnter())
                {
                    return touched;
                }

                try
                {
                    sink += segment.Mapping.Touch(offset, length);
                }
                finally
                {
                    generation.Exit();
                }

                touched += length;
                if (!Pace(before + touched, started))
                {
                    return touched;
                }
            }
        }

        GC.KeepAlive(sink);
        return touched;
    }

    private bool Pace(long touched, long started)
    {
        var ahead = TimeSpan.FromSeconds((double)touched / _bytesPerSecond) - Stopwatch.GetElapsedTime(started);
        if (ahead > TimeSpan.Zero && !_stopped)
        {
            Thread.Sleep(ahead);
        }

        return !_stopped;
    }
}
