using Microsoft.Extensions.Logging;

namespace EmbeddingCache.Storage;

/// <summary>
/// Follows one kind of one model's cache from the files its writer publishes, writing nothing: each <see cref="Poll"/>
/// reads the kind manifest and brings the served <see cref="StoreGeneration"/> up to it. For the same generation it maps
/// new segments and indexes only the new rows of each (<see cref="FollowedSegment.Extend"/>); for another generation
/// it builds the new state aside and swaps it in (<see cref="GenerationGuard.Replace"/>: reads inside the old one
/// finish first). Files opened by name are trusted only once the manifest still names the same generation after they
/// were opened: the writer swaps kind folders whole, so they are that generation's files.
/// </summary>
/// <remarks>
/// A row is served only when the manifest, the segment's header count and its complete sidecar records all cover it,
/// so never beyond what the writer committed. A file problem is logged once and the last good state keeps being served.
/// One poller thread calls <see cref="Poll"/>; reads run concurrently without locks.
/// </remarks>
internal sealed class KindFollower
{
    private readonly string _model;
    private readonly VectorKind _kind;
    private readonly string _directory;
    private readonly string _manifestPath;
    private readonly int _segmentRows;
    private readonly ILogger _logger;
    private string? _reportedProblem;

    public KindFollower(string model, VectorKind kind, string modelDirectory, NpyLayout layout, int segmentRows, ILogger logger)
    {
        _model = model;
        _kind = kind;
        _directory = Path.Combine(modelDirectory, kind.Name());
        _manifestPath = Path.Combine(_directory, CacheManifest.FileName);
        _segmentRows = segmentRows;
        _logger = logger;
        Generations = new GenerationGuard(StoreGeneration.Empty(0, layout, RowAddressing.ForSegmentRows(segmentRows), disposed: false));
    }

    /// <summary>What reads enter: generation 0, empty, until a manifest has been followed.</summary>
    public GenerationGuard Generations { get; }

    /// <summary>Brings the served state up to the published one; never throws for a file problem (it is logged once).</summary>
    public void Poll()
    {
        var current = Generations.Current;
        if (current.Disposed)
        {
            return;
        }

        string? problem;
        try
        {
            KindManifest? manifest = KindManifest.TryRead(_manifestPath, out problem);
            if (manifest is not null)
            {
                bool sameGeneration = manifest.Generation == current.Number && manifest.Dims == current.Layout.Dims && manifest.DType == current.Layout.DType;
                problem = sameGeneration && TryExtend(current, manifest, out var extendProblem) ? extendProblem : Rebuild(manifest);
            }
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or ArgumentException)
        {
            problem = exception.Message; // a file vanished or changed under the poll: the next one sees the new state
        }

        Report(problem);
    }

    /// <summary>Stops serving: reads see a disposed generation, the files are closed.</summary>
    public void Shutdown()
    {
        var current = Generations.Current;
        if (!current.Disposed)
        {
            Generations.Replace(StoreGeneration.Empty(current.Number, current.Layout, current.Addressing, disposed: true));
        }
    }

    /// <summary>Adds what the manifest publishes beyond the served rows; false when the state must be rebuilt instead.</summary>
    private bool TryExtend(StoreGeneration current, KindManifest manifest, out string? problem)
    {
        problem = null;
        Segment[] served = current.Segments;
        if (manifest.Segments.Count < served.Length || !Fits(current.Addressing, manifest))
        {
            return false;
        }

        for (int i = 0; i < served.Length; i++)
        {
            if (served[i].Number != manifest.Segments[i].Number)
            {
                return false;
            }
        }

        var segments = new Segment[manifest.Segments.Count];
        served.CopyTo(segments, 0);
        var opened = new List<FollowedSegment>();
        try
        {
            for (int i = 0; i < served.Length; i++)
            {
                var segment = (FollowedSegment)served[i];
                if (manifest.Segments[i].Rows > segment.Rows && segment.NeedsReopen(manifest.Segments[i].Rows))
                {
                    segments[i] = segment.Reopen();
                    opened.Add((FollowedSegment)segments[i]);
                }
            }

            for (int i = served.Length; i < segments.Length; i++)
            {
                segments[i] = FollowedSegment.Open(_directory, manifest.Segments[i].Number, current.Layout);
                opened.Add((FollowedSegment)segments[i]);
            }

            if (opened.Count > 0 && !StillPublishes(manifest.Generation))
            {
                Dispose(opened); // the folder was swapped meanwhile: the next poll builds the new generation
                return true;
            }
        }
        catch
        {
            Dispose(opened);
            throw;
        }

        if (opened.Count > 0)
        {
            for (int i = 0; i < served.Length; i++)
            {
                if (!ReferenceEquals(segments[i], served[i]))
                {
                    current.Supersede((FollowedSegment)served[i]);
                }
            }

            current.Segments = segments; // before any index entry points into a new segment
        }

        problem = ExtendAll(current, segments, manifest);
        return true;
    }

    /// <returns>Null, or the problem that kept the new generation from being served.</returns>
    private string? Rebuild(KindManifest manifest)
    {
        int longest = manifest.Segments.Count == 0 ? 0 : manifest.Segments.Max(segment => segment.Rows);
        var addressing = RowAddressing.ForSegmentRows(Math.Max(_segmentRows, longest));
        if (manifest.Segments.Count > addressing.MaxSegments)
        {
            return $"{manifest.Segments.Count} segments are more than the index addresses at this segment size; raise SegmentRows";
        }

        var layout = new NpyLayout(manifest.Dims, manifest.DType);
        var segments = new List<FollowedSegment>(manifest.Segments.Count);
        try
        {
            foreach (KindManifestSegment published in manifest.Segments)
            {
                segments.Add(FollowedSegment.Open(_directory, published.Number, layout));
            }
        }
        catch
        {
            Dispose(segments);
            throw;
        }

        var fresh = new StoreGeneration(manifest.Generation, layout, addressing, [.. segments], new KeyIndex((int)Math.Min(manifest.Sequence, int.MaxValue / 2)), new KeyIndex(), disposed: false);
        if (!StillPublishes(manifest.Generation))
        {
            fresh.Release(); // swapped again while we opened the files: retry on the next poll
            return null;
        }

        string? problem;
        try
        {
            problem = ExtendAll(fresh, fresh.Segments, manifest);
        }
        catch
        {
            fresh.Release();
            throw;
        }

        long previous = Generations.Current.Number;
        Generations.Replace(fresh); // waits for the reads inside the old generation, then unmaps it
        StorageLog.FollowerGenerationServed(_logger, _model, _kind.Name(), manifest.Generation, previous, fresh.RowCount);
        return problem;
    }

    private static string? ExtendAll(StoreGeneration generation, Segment[] segments, KindManifest manifest)
    {
        string? problem = null;
        for (int i = 0; i < segments.Length; i++)
        {
            KindManifestSegment published = manifest.Segments[i];
            problem ??= ((FollowedSegment)segments[i]).Extend(published.Rows, published.Sealed, generation, i);
        }

        return problem;
    }

    private static bool Fits(RowAddressing addressing, KindManifest manifest) =>
        manifest.Segments.Count <= addressing.MaxSegments && manifest.Segments.All(segment => segment.Rows <= 1L << addressing.RowBits);

    private bool StillPublishes(long generation) => KindManifest.TryRead(_manifestPath, out _)?.Generation == generation;

    private void Report(string? problem)
    {
        if (problem is not null && problem != _reportedProblem)
        {
            StorageLog.FollowerProblem(_logger, _model, _kind.Name(), problem);
        }

        _reportedProblem = problem;
    }

    private static void Dispose(IEnumerable<FollowedSegment> segments)
    {
        foreach (var segment in segments)
        {
            segment.Dispose();
        }
    }
}
