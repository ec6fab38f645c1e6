using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using EmbeddingCache.Benchmarks.Corpus;
using EmbeddingCache.Benchmarks.Infrastructure;
using Grpc.Core;
using Grpc.Net.Client;
using Wire = EmbeddingCache.Protocol.V1;

namespace EmbeddingCache.Benchmarks.MissPath;

/// <summary>
/// Where the server says a call's time went (trailing metadata <c>embcache-*-us</c>), summed over calls.
/// Concurrent calls overlap, and a batch shared by several calls counts in each, so sums can exceed wall time.
/// </summary>
public readonly record struct ServerTimings(TimeSpan Lookup, TimeSpan Tokenize, TimeSpan Queue, TimeSpan Inference, TimeSpan Write)
{
    /// <summary>The trailer names, as the server writes them.</summary>
    public static readonly string[] TrailerNames =
        ["embcache-lookup-us", "embcache-tokenize-us", "embcache-queue-us", "embcache-inference-us", "embcache-write-us"];

    /// <summary>Reads one call's trailers; a missing trailer counts as zero.</summary>
    public static ServerTimings FromTrailers(Metadata trailers)
    {
        var values = new TimeSpan[TrailerNames.Length];
        for (var i = 0; i < TrailerNames.Length; i++)
        {
            var text = trailers.GetValue(TrailerNames[i]);
            values[i] = text is not null && long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var microseconds)
                ? TimeSpan.FromMicroseconds(microseconds)
                : TimeSpan.Zero;
        }

        return new ServerTimings(values[0], values[1], values[2], values[3], values[4]);
    }

    /// <summary>The sum of two sets of timings.</summary>
    public static ServerTimings operator +(ServerTimings a, ServerTimings b) => new(
        a.Lookup + b.Lookup, a.Tokenize + b.Tokenize, a.Queue + b.Queue, a.Inference + b.Inference, a.Write + b.Write);
}

/// <summary>One timed run of the corpus through a server: texts/s, the server's own timings and the vectors it returned.</summary>
public sealed record GrpcRunResult(TimeSpan Elapsed, int Texts, int Calls, ServerTimings Timings, float[] Vectors, PhaseLoad Load)
{
    /// <summary>Texts per second over the whole run.</summary>
    public double TextsPerSecond => Texts / Elapsed.TotalSeconds;
}

/// <summary>
/// Scenarios (c) and (d): the corpus sent to a running server with <c>Embed</c> (kind DOCUMENT, with ids), by
/// <c>clients</c> concurrent clients, each on its own channel (its own HTTP/2 connection), each taking the next
/// <c>textsPerCall</c> texts of the corpus in corpus order until none are left. Every call must come back with all
/// rows computed: a cached row would mean the cache was not cold and the run is refused.
/// </summary>
public static class GrpcEmbedRun
{
    /// <summary>The model every miss-path scenario runs.</summary>
    public const string Model = "all-MiniLM-L6-v2";

    /// <summary>
    /// Sends a few texts that are not in the corpus, so that the server's gRPC, engine and storage code is compiled
    /// and the document cache exists before the clock starts; the corpus itself stays uncached.
    /// </summary>
    public static async Task WarmUpAsync(EmbcacheServerProcess server, CancellationToken cancellationToken)
    {
        using var channel = server.OpenChannel();
        var client = new Wire.EmbeddingCache.EmbeddingCacheClient(channel);
        for (var i = 0; i < 3; i++)
        {
            var request = new Wire.EmbedRequest { Model = Model, Kind = Wire.Kind.Document };
            request.Texts.Add($"warm-up call {i}: a text the corpus does not contain.");
            request.Ids.Add($"warm-up-{i}");
            await client.EmbedAsync(request, cancellationToken: cancellationToken).ResponseAsync.ConfigureAwait(false);
        }
    }

    /// <summary>Runs the corpus through <paramref name="server"/> once; the clock covers the first send to the last reply.</summary>
    public static async Task<GrpcRunResult> RunAsync(
        EmbcacheServerProcess server, IReadOnlyList<CorpusText> corpus, int clients, int textsPerCall, Func<TimeSpan> ownCpuTime,
        CancellationToken cancellationToken)
    {
        var channels = Enumerable.Range(0, clients).Select(_ => server.OpenChannel()).ToArray();
        try
        {
            // Open every connection before the clock starts, as long-lived clients would have.
            foreach (var channel in channels)
            {
                await channel.ConnectAsync(cancellationToken).ConfigureAwait(false);
            }

            var calls = (corpus.Count + textsPerCall - 1) / textsPerCall;
            var dims = 0;
            var rows = new float[corpus.Count][];
            var timings = new ServerTimings[calls];
            var next = -1;
            var watch = MachineLoad.Watch(ownCpuTime);
            var started = Stopwatch.GetTimestamp();
            await Task.WhenAll(channels.Select(channel => Task.Run(() => ClientAsync(channel), cancellationToken))).ConfigureAwait(false);
            var elapsed = Stopwatch.GetElapsedTime(started);
            var load = watch.Stop();

            var vectors = new float[corpus.Count * dims];
            for (var i = 0; i < corpus.Count; i++)
            {
                rows[i].CopyTo(vectors, i * dims);
            }

            var total = default(ServerTimings);
            foreach (var timing in timings)
            {
                total += timing;
            }

            return new GrpcRunResult(elapsed, corpus.Count, calls, total, vectors, load);

            async Task ClientAsync(GrpcChannel channel)
            {
                var client = new Wire.EmbeddingCache.EmbeddingCacheClient(channel);
                int call;
                while ((call = Interlocked.Increment(ref next)) < calls)
                {
                    var first = call * textsPerCall;
                    var count = Math.Min(textsPerCall, corpus.Count - first);
                    var request = new Wire.EmbedRequest { Model = Model, Kind = Wire.Kind.Document, Dtype = Wire.DType.Float32 };
                    for (var i = first; i < first + count; i++)
                    {
                        request.Texts.Add(corpus[i].Text);
                        request.Ids.Add(corpus[i].Id);
                    }

                    using var pending = client.EmbedAsync(request, cancellationToken: cancellationToken);
                    var response = await pending.ResponseAsync.ConfigureAwait(false);
                    if (response.ComputedCount != count || response.Vectors.Count != count)
                    {
                        throw new InvalidOperationException(
                            $"Call {call}: {response.ComputedCount} of {count} rows were computed ({response.CachedCount} cached, " +
                            $"{response.MissingCount} missing); the cache was not cold, so this run would not measure the miss path.");
                    }

                    var width = (int)response.Vectors.Dims;
                    Interlocked.CompareExchange(ref dims, width, 0);
                    var floats = MemoryMarshal.Cast<byte, float>(response.Vectors.Data.Span);
                    for (var i = 0; i < count; i++)
                    {
                        rows[first + i] = floats.Slice(i * width, width).ToArray();
                    }

                    timings[call] = ServerTimings.FromTrailers(pending.GetTrailers());
                }
            }
        }
        finally
        {
            foreach (var channel in channels)
            {
                channel.Dispose();
            }
        }
    }
}
