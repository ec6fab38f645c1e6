using EmbeddingCache.Engine;
using EmbeddingCache.Protocol.V1;
using EmbeddingCache.Storage;
using Google.Protobuf;
using Grpc.Core;
using Wire = EmbeddingCache.Protocol.V1;

namespace EmbeddingCache.Server.Services;

/// <summary>The EmbeddingCache gRPC service: validates the wire enums, maps messages to engine calls and back.</summary>
internal sealed class EmbeddingCacheService(EmbeddingCacheEngine engine) : Wire.EmbeddingCache.EmbeddingCacheBase
{
    public override async Task<EmbedResponse> Embed(EmbedRequest request, ServerCallContext context)
    {
        var command = ToCommand(request);
        var result = await engine.EmbedAsync(command, context.CancellationToken).ConfigureAwait(false);
        ReturnRowsAfterReply(context, result);
        CacheMetrics.Answered(command.Model, command.Kind, result);
        AddTimings(context, result.Timings);
        AddPosition(context, command.Model, command.Kind);
        return ToResponse(result);
    }

    /// <summary>
    /// The reply's bytes field wraps the pooled rows of <paramref name="result"/> (no copy); they go back to the pool
    /// when ASP.NET Core disposes what the response registered, after the reply has been serialised and sent.
    /// </summary>
    private static void ReturnRowsAfterReply(ServerCallContext context, LookupResult result) =>
        context.GetHttpContext().Response.RegisterForDispose(result);

    private static EmbedCommand ToCommand(EmbedRequest request) =>
        new(request.Model, RequiredKind(request.Kind), request.Texts, request.Ids, ToStorage(request.Dtype, "dtype"), request.CacheOnly);

    private static EmbedResponse ToResponse(LookupResult result)
    {
        var response = new EmbedResponse
        {
            Vectors = ToWire(result.Vectors),
            Fingerprint = result.Fingerprint,
            CachedCount = (uint)result.CountOf(Engine.RowSource.Cached),
            ComputedCount = (uint)result.CountOf(Engine.RowSource.Computed),
            MissingCount = (uint)result.CountOf(Engine.RowSource.Missing),
        };
        AddSources(response.Sources, result.Sources);
        return response;
    }

    /// <summary>
    /// Requests are read ahead up to <see cref="EmbeddingCacheEngine.StreamWindow"/> in flight; responses go back in request order.
    /// Writing waits for the client to read (HTTP/2 flow control), and reading waits for a free slot, so
    /// neither side buffers without bound.
    /// </summary>
    public override async Task EmbedStream(
        IAsyncStreamReader<EmbedRequest> requestStream, IServerStreamWriter<EmbedResponse> responseStream, ServerCallContext context)
    {
        var inFlight = new Queue<Task<LookupResult>>();
        // The trailers tell where the stream's last model was served, for each kind the stream asked it for.
        string? model = null;
        var kinds = new HashSet<VectorKind>();
        while (await requestStream.MoveNext(context.CancellationToken).ConfigureAwait(false))
        {
            var request = requestStream.Current;
            if (request.Model != model) kinds.Clear();
            model = request.Model;
            if (request.Kind is Kind.Query or Kind.Document) kinds.Add(request.Kind == Kind.Query ? VectorKind.Query : VectorKind.Document);
            inFlight.Enqueue(EmbedOneAsync(request, context));
            if (inFlight.Count >= EmbeddingCacheEngine.StreamWindow)
            {
                await WriteAsync(responseStream, await inFlight.Dequeue().ConfigureAwait(false)).ConfigureAwait(false);
            }
        }
        while (inFlight.Count > 0)
        {
            await WriteAsync(responseStream, await inFlight.Dequeue().ConfigureAwait(false)).ConfigureAwait(false);
        }
        if (model is not null) AddPosition(context, model, [.. kinds]);
    }

    /// <summary>Writing serialises the reply, so its pooled rows can go back to the pool right after.</summary>
    private static async Task WriteAsync(IServerStreamWriter<EmbedResponse> responseStream, LookupResult result)
    {
        using (result)
        {
            await responseStream.WriteAsync(ToResponse(result)).ConfigureAwait(false);
        }
    }

    private async Task<LookupResult> EmbedOneAsync(EmbedRequest request, ServerCallContext context)
    {
        var command = ToCommand(request);
        var result = await engine.EmbedAsync(command, context.CancellationToken).ConfigureAwait(false);
        CacheMetrics.Answered(command.Model, command.Kind, result);
        return result;
    }

    public override async Task<ScoreResponse> Score(ScoreRequest request, ServerCallContext context)
    {
        if (request.Candidates.Count != 0) return await Rerank(request, context).ConfigureAwait(false);
        var result = await engine.ScoreAsync(
            new ScoreCommand(request.Model, request.Queries, request.DocumentIds, request.DocumentTexts, (int)Math.Min(request.TopK, int.MaxValue)),
            context.CancellationToken).ConfigureAwait(false);
        var response = new ScoreResponse
        {
            QueryCount = (uint)result.QueryCount,
            DocumentCount = (uint)result.DocumentCount,
            Scores = PackedFloats(result.Scores),
        };
        AddSources(response.QuerySources, result.QuerySources);
        AddSources(response.DocumentSources, result.DocumentSources);
        AddTop(response, result.Top);
        AddPosition(context, request.Model, BothKinds);
        return response;
    }

    /// <summary>Score with per-query candidate lists: each query against its own candidates.</summary>
    private async Task<ScoreResponse> Rerank(ScoreRequest request, ServerCallContext context)
    {
        if (request.DocumentIds.Count != 0 || request.DocumentTexts.Count != 0)
        {
            throw Invalid("candidates",
                "give either candidates (one list per query) or document_ids/document_texts (one list for every query), not both");
        }
        var candidates = request.Candidates
            .Select(c => new Engine.QueryCandidates(c.Ids, c.Texts.Select(t => t.Length == 0 ? null : t).ToArray()))
            .ToArray();
        var result = await engine.RerankAsync(
            new RerankCommand(request.Model, request.Queries, candidates, (int)Math.Min(request.TopK, int.MaxValue)),
            context.CancellationToken).ConfigureAwait(false);
        var response = new ScoreResponse
        {
            QueryCount = (uint)request.Queries.Count,
            CandidateScores = PackedFloats(result.Scores),
        };
        foreach (var count in result.Counts) response.CandidateCounts.Add((uint)count);
        AddSources(response.QuerySources, result.QuerySources);
        AddSources(response.CandidateSources, result.CandidateSources);
        AddTop(response, result.Top);
        AddPosition(context, request.Model, BothKinds);
        return response;
    }

    private static ByteString PackedFloats(float[] values) =>
        UnsafeByteOperations.UnsafeWrap(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    private static void AddTop(ScoreResponse response, IReadOnlyList<(int Index, float Score)[]> bestPerQuery)
    {
        foreach (var best in bestPerQuery)
        {
            var top = new TopDocuments();
            foreach (var (index, score) in best)
            {
                top.Indexes.Add((uint)index);
                top.Scores.Add(score);
            }
            response.Top.Add(top);
        }
    }

    public override async Task<GetResponse> Get(GetRequest request, ServerCallContext context)
    {
        var command = new GetCommand(request.Model, RequiredKind(request.Kind), request.Ids, request.Texts, ToStorage(request.Dtype, "dtype"));
        var result = await engine.GetAsync(command, context.CancellationToken).ConfigureAwait(false);
        ReturnRowsAfterReply(context, result);
        CacheMetrics.Answered(command.Model, command.Kind, result);
        AddTimings(context, result.Timings);
        AddPosition(context, command.Model, command.Kind);
        int missing = result.CountOf(Engine.RowSource.Missing);
        var response = new GetResponse
        {
            Vectors = ToWire(result.Vectors),
            FoundCount = (uint)(result.Sources.Length - missing),
            MissingCount = (uint)missing,
        };
        AddSources(response.Sources, result.Sources);
        return response;
    }

    public override async Task<PutResponse> Put(PutRequest request, ServerCallContext context)
    {
        var vectors = request.Vectors ?? throw Invalid("vectors", "vectors is missing: send count, dims, dtype and the packed data");
        var kind = RequiredKind(request.Kind);
        int stored = await engine.PutAsync(
            new PutCommand(request.Model, kind, request.Ids, request.Texts,
                (int)Math.Min(vectors.Count, int.MaxValue), (int)Math.Min(vectors.Dims, int.MaxValue),
                ToStorage(vectors.Dtype, "vectors.dtype"), vectors.Data.Memory),
            context.CancellationToken).ConfigureAwait(false);
        CacheMetrics.Stored(request.Model, stored);
        AddPosition(context, request.Model, kind);
        return new PutResponse { Stored = (uint)stored };
    }

    public override async Task<InvalidateResponse> Invalidate(InvalidateRequest request, ServerCallContext context)
    {
        VectorKind? kind = request.Kind == Kind.Unspecified ? null : RequiredKind(request.Kind);
        var result = await engine.InvalidateAsync(request.Model, kind, context.CancellationToken).ConfigureAwait(false);
        AddPosition(context, request.Model, kind is { } one ? [one] : BothKinds);
        return new InvalidateResponse { RowsRemoved = (ulong)result.RowsRemoved, BytesRemoved = (ulong)result.BytesRemoved };
    }

    public override Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var response = new ListModelsResponse();
        foreach (var model in engine.ListModels())
        {
            var info = new ModelInfo
            {
                Name = model.Name,
                Dims = (uint)model.Dims,
                CanCompute = model.CanCompute,
                Fingerprint = model.Fingerprint,
                QueryRows = (ulong)model.QueryRows,
                DocumentRows = (ulong)model.DocumentRows,
                Bytes = (ulong)model.Bytes,
                Hits = (ulong)model.Hits,
                Misses = (ulong)model.Misses,
                Error = model.Error ?? "",
                OnnxFile = model.OnnxFile ?? "",
            };
            if (model.Settings is { } settings)
            {
                info.Pooling = settings.PoolingName;
                info.MaxTokens = (uint)settings.MaxTokens;
                info.QueryPrefix = settings.QueryPrefix;
                info.DocumentPrefix = settings.DocumentPrefix;
                info.Similarity = settings.SimilarityName;
                info.Dense.AddRange(settings.Dense.Select(dense => dense.ToString()));
                info.Normalize = settings.Normalize;
            }
            response.Models.Add(info);
        }
        return Task.FromResult(response);
    }

    private static VectorKind RequiredKind(Kind kind) => kind switch
    {
        Kind.Query => VectorKind.Query,
        Kind.Document => VectorKind.Document,
        Kind.Unspecified => throw Invalid("kind", "kind is unspecified: set KIND_QUERY or KIND_DOCUMENT"),
        _ => throw Invalid("kind", $"kind {(int)kind} is unknown: set KIND_QUERY or KIND_DOCUMENT"),
    };

    private static VectorDType ToStorage(DType dtype, string field) => dtype switch
    {
        DType.Unspecified or DType.Float32 => VectorDType.Float32,
        DType.Float16 => VectorDType.Float16,
        _ => throw Invalid(field, $"{field} {(int)dtype} is unknown: use DTYPE_FLOAT32 or DTYPE_FLOAT16"),
    };

    private static Vectors ToWire(PackedVectors vectors) => new()
    {
        Count = (uint)vectors.Count,
        Dims = (uint)vectors.Dims,
        Dtype = vectors.DType == VectorDType.Float16 ? DType.Float16 : DType.Float32,
        Data = UnsafeByteOperations.UnsafeWrap(vectors.Data),
    };

    private static void AddSources(Google.Protobuf.Collections.RepeatedField<Wire.RowSource> target, Engine.RowSource[] sources)
    {
        target.Capacity = sources.Length;
        foreach (var source in sources) target.Add((Wire.RowSource)source);
    }

    private static readonly VectorKind[] BothKinds = [VectorKind.Query, VectorKind.Document];

    /// <summary>
    /// The generation and sequence the reply was served at, per kind touched, in trailing metadata
    /// (<c>embcache-generation: query=2,document=5</c>): a client behind a proxy sees which state a follower served and
    /// how far it lags its writer. Names with hyphens, never underscores, which nginx drops.
    /// </summary>
    private void AddPosition(ServerCallContext context, string model, params ReadOnlySpan<VectorKind> kinds)
    {
        var generations = new List<string>(2);
        var sequences = new List<string>(2);
        foreach (var kind in kinds)
        {
            if (engine.PositionOf(model, kind) is not { } position) continue;
            generations.Add(FormattableString.Invariant($"{kind.Name()}={position.Generation}"));
            sequences.Add(FormattableString.Invariant($"{kind.Name()}={position.Sequence}"));
        }
        if (generations.Count == 0) return;
        context.ResponseTrailers.Add("embcache-generation", string.Join(',', generations));
        context.ResponseTrailers.Add("embcache-sequence", string.Join(',', sequences));
    }

    /// <summary>Where the time went, in trailing metadata: a researcher sees why a call was slow.</summary>
    private static void AddTimings(ServerCallContext context, RequestTimings timings)
    {
        AddMicroseconds(context, "embcache-lookup-us", timings.Lookup);
        AddMicroseconds(context, "embcache-tokenize-us", timings.Tokenize);
        AddMicroseconds(context, "embcache-queue-us", timings.Queue);
        AddMicroseconds(context, "embcache-inference-us", timings.Inference);
        AddMicroseconds(context, "embcache-write-us", timings.Write);
    }

    private static void AddMicroseconds(ServerCallContext context, string key, TimeSpan elapsed) =>
        context.ResponseTrailers.Add(key, ((long)elapsed.TotalMicroseconds).ToString(System.Globalization.CultureInfo.InvariantCulture));

    private static CacheRequestException Invalid(string field, string message) =>
        new(CacheErrorKind.InvalidArgument, message, field);
}
