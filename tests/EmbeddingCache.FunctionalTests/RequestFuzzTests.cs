using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using CsCheck;
using EmbeddingCache.Engine;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit.Abstractions;
using CacheClient = EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient;
using QueryCandidates = EmbeddingCache.Protocol.V1.QueryCandidates;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// Property-based fuzzing of request validation against one real server: random Embed, Get, Put, Score (document
/// lists and per-query candidates) and Invalidate requests (odd model names, unknown enum values, random unicode and
/// NUL, lengths over the limits, mismatched ids, wrong byte counts, NaN, zero and huge dims, too many pairs). Each
/// gets a well-formed reply or a documented status with a message, a request that breaks a rule is never accepted,
/// and the server neither dies nor loses a row it stored before. EmbedStream gets sequences of such Embeds,
/// ListModels is asked between them. Every method also gets raw bytes: random ones, and requests truncated, with a
/// byte changed, with unknown fields, wrong or invalid wire types, overlong lengths and invalid UTF-8; what protobuf
/// cannot parse is INVALID_ARGUMENT.
/// EMBCACHE_FUZZ_INPUTS sets the count for the long run (3,000 in the suite), EMBCACHE_FUZZ_MINUTES bounds it (60 by
/// default); its report goes to the test output and, for a long run, to TestResults/request-fuzz.txt.
/// </summary>
public sealed class RequestFuzzTests(ITestOutputHelper output) : ServerTest(output)
{
    private const long SuiteInputs = 3_000;
    private const long ChunkInputs = 10_000;
    private const int MaxRows = 64;
    private const int MaxTextLength = 4096;
    private const int MaxIdLength = 64;
    private const int MaxDims = 1024;
    private const int MaxMessageBytes = 1 << 20;

    /// <summary>A store-only model the fuzzer Puts to and reads from (8 dims).</summary>
    private const string StoreModel = "fuzz-store";

    /// <summary>Holds the known good row; no generated request names it.</summary>
    private const string KeptModel = "kept-row";

    /// <summary>Holds the reranking fixtures (8 dims); only Score names it, so no Invalidate takes them away.</summary>
    private const string RerankModel = "fuzz-rerank";

    private const int MaxScores = 1000;

    /// <summary>
    /// Calls in flight at once. 8 kept the server's cores busier (about 170 calls/s); 2 leave room for the server's
    /// own threads on a 2-core machine.
    /// </summary>
    private const int SamplerThreads = 2;

    /// <summary>
    /// HTTP/2 connections the calls are spread over. Kestrel keeps tracking a stream it answered before reading the
    /// request's body (a message over the size limit, a refused stream message) until the client ends or resets it,
    /// or for its body-drain timeout; over 200 such streams on one connection and it refuses new streams with
    /// ENHANCE_YOUR_CALM, its rapid-reset guard. The fuzzer has requests refused far faster than any client would
    /// (a long run failed so within 10,000 calls on one connection), so it spreads them over several.
    /// </summary>
    private const int Connections = 8;

    /// <summary>
    /// Every call has one, far over any answer's time under load: a call the server never answers then fails the
    /// run with its request printed, where without it the sampler waited for it forever (a long run stalled so).
    /// </summary>
    private static readonly TimeSpan CallDeadline = TimeSpan.FromSeconds(120);

    private static readonly TimeSpan AbandonWriteAfter = TimeSpan.FromSeconds(10);

    /// <summary>Stream writes the .NET client left waiting after their call was answered and cancelled.</summary>
    private static long _abandonedWrites;

    /// <summary>
    /// Query texts and document ids stored in <see cref="StoreModel"/> before fuzzing: reranking against them is
    /// validated and scored without computing a vector.
    /// </summary>
    private static readonly string[] StoredQueries = [.. Enumerable.Range(0, 24).Select(i => $"query {i}")];

    private static readonly string[] StoredDocuments = [.. Enumerable.Range(0, MaxRows).Select(i => $"doc{i}")];

    /// <summary>Short texts most computing Embeds draw from, so that the model computes each about once.</summary>
    private static readonly string[] ComputedTexts = [.. Enumerable.Range(0, 16).Select(i => $"computed {i} \u00e9\u6771")];

    private static readonly string ServiceName = EmbeddingCache.Protocol.V1.EmbeddingCache.Descriptor.FullName;

    private static readonly Marshaller<byte[]> Bytes = Marshallers.Create(b => b, b => b);

    private static readonly StatusCode[] Documented =
        [StatusCode.InvalidArgument, StatusCode.NotFound, StatusCode.FailedPrecondition, StatusCode.ResourceExhausted];

    private static readonly Gen<string> ModelNames = Gen.Frequency(
        (6, Gen.OneOf(Wire.MiniLM, StoreModel)),
        (1, Gen.OneOf("fuzz-new-a", "fuzz-new-b", "unknown-model", "a", "A.b_c-9")),
        (2, Gen.OneOf(Gen.String[0, 20], Gen.String[Gen.Char["./\\\0a-_: ~\u00e9"], 0, 12], Gen.Int[120, 140].Select(n => new string('m', n)))));

    /// <summary>Texts and ids: random unicode (lone surrogates included), NUL, whitespace, and lengths around the limit.</summary>
    private static readonly Gen<string> Texts = Gen.Frequency(
        (6, Gen.String[0, 40]),
        (2, Gen.String[Gen.Char["\0 \t\n\u00e9\u6771\ud83d\ude00a"], 0, 30]),
        (1, Gen.OneOf(Gen.Const(""), Gen.Int[MaxIdLength - 1, MaxIdLength + 1].Select(n => new string('i', n)))),
        (1, Gen.Int[MaxTextLength - 2, MaxTextLength + 2].Select(n => new string('t', n))));

    private static readonly Gen<string[]> TextLists = Gen.Frequency(
        (8, Texts.Array[0, 6]),
        (1, Gen.Int[MaxRows - 1, MaxRows + 2].Select(n => Enumerable.Range(0, n).Select(i => $"row {i}").ToArray())),
        // Just over the message size limit, refused by gRPC before the server reads it: the boundary is what matters,
        // and each MiB more was only more bytes to copy and send.
        (1, Gen.Int[1, 2048].Select(n => new[] { new string('\u00e9', MaxMessageBytes / 2 + n) })));

    private static readonly Gen<Kind> Kinds = Gen.Frequency((8, Gen.OneOf(Kind.Query, Kind.Document)), (2, Gen.Int[-1, 4].Select(k => (Kind)k)), (1, Gen.Const((Kind)1000)));

    private static readonly Gen<DType> DTypes = Gen.Frequency((8, Gen.OneOf(DType.Unspecified, DType.Float32, DType.Float16)), (1, Gen.Int[3, 99].Select(d => (DType)d)));

    /// <summary>Now and then one value no vector may hold (float.MaxValue is infinite as float16).</summary>
    private static readonly Gen<float?> Poison = Gen.Frequency(
        (5, Gen.Const((float?)null)),
        (1, Gen.OneOf<float?>(float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue)));

    /// <summary>
    /// A request, its description for a failure message, and the rule it breaks (null when it breaks none known); an
    /// EmbedStream call carries its messages in <paramref name="Stream"/>.
    /// </summary>
    /// <remarks>
    /// A call of raw bytes carries them in <paramref name="Raw"/> (one a message), <paramref name="Request"/> being the
    /// valid request they were made from.
    /// </remarks>
    private sealed record Fuzzed(string Rpc, IMessage Request, string? Breaks, Fuzzed[]? Stream = null, byte[][]? Raw = null);

    private static readonly Gen<Fuzzed> Embeds = Gen.Select(ModelNames, Kinds, TextLists, Gen.Frequency((3, Gen.Const((string[]?)null)), (1, Texts.Array[0, 6].Select(a => (string[]?)a))), DTypes, Gen.Select(Gen.Bool, Gen.Int[0, 7]),
        (model, kind, texts, ids, dtype, computing) =>
        {
            var (cacheOnly, fresh) = computing;
            // Computing is slow on a shared 2-core machine: only a few short texts may reach the model, and most of
            // those are texts it has computed before (a hit, validated all the same); one in eight is new to it.
            cacheOnly |= model == Wire.MiniLM && (texts.Length > 3 || texts.Any(t => t.Length > 64));
            if (model == Wire.MiniLM && !cacheOnly && fresh != 0) texts = [.. texts.Select((t, i) => ComputedTexts[(t.Length + i) % ComputedTexts.Length])];
            var request = new EmbedRequest { Model = model, Kind = kind, Texts = { texts }, Dtype = dtype, CacheOnly = cacheOnly };
            if (ids is not null) request.Ids.AddRange(ids);
            string? breaks = ModelProblem(model) ?? KindProblem(kind) ?? DTypeProblem(dtype) ?? TextsProblem(texts)
                ?? (ids is { Length: > 0 } && ids.Length != texts.Length ? "ids and texts differ in length" : null)
                ?? (ids is { Length: > 0 } ? IdsProblem(ids) : null)
                ?? UnknownModelProblem(model);
            return new Fuzzed("Embed", request, breaks);
        });

    private static readonly Gen<Fuzzed> Gets = Gen.Select(ModelNames, Kinds, Texts.Array[0, 6], TextLists, Gen.Int[0, 2], DTypes,
        (model, kind, ids, texts, which, dtype) =>
        {
            var request = new GetRequest { Model = model, Kind = kind, Dtype = dtype };
            if (which != 1) request.Ids.AddRange(ids);
            if (which != 0) request.Texts.AddRange(texts);
            string? breaks = ModelProblem(model) ?? KindProblem(kind) ?? DTypeProblem(dtype)
                ?? (request.Ids.Count > 0 && request.Texts.Count > 0 ? "ids and texts both given" : null)
                ?? IdsProblem(request.Ids) ?? TextsProblem(request.Texts) ?? UnknownModelProblem(model);
            return new Fuzzed("Get", request, breaks);
        });

    private static readonly Gen<Fuzzed> Puts = Gen.Select(
            // Put creates the models it names: never one that the other requests expect to be unknown.
            Gen.Frequency((6, Gen.OneOf(StoreModel, Wire.MiniLM, "fuzz-new-a")), (1, ModelNames.Where(m => ModelProblem(m) is not null))),
            Kinds,
            Gen.Int[0, 4],
            // -1: the model's own dims, so that most Puts are well formed and reach storage.
            Gen.Frequency((6, Gen.Const(-1)), (2, Gen.OneOf(0, 1, 8, 384, MaxDims, MaxDims + 1)), (1, Gen.Int[2, 40])),
            Gen.Select(Gen.Int[0, 3], Gen.Frequency((6, Gen.Const(0)), (1, Gen.Const(-1)), (1, Gen.Const(1))), DTypes, Gen.Bool),
            Gen.Select(Texts.Array[0, 5], Texts.Array[0, 5], Gen.Float[-2f, 2f].Array[1, 64], Poison),
        (model, kind, count, dims, shape, keys) =>
        {
            var (keyed, byteDelta, dtype, vectorsMissing) = shape;
            var (ids, texts, pool, poison) = keys;
            if (dims < 0) dims = model == Wire.MiniLM ? 384 : 8;
            // Mostly one id and/or text per row; sometimes a mismatch.
            ids = keyed is 0 or 2 ? Enumerable.Range(0, count).Select(i => ids.Length > 0 ? $"{ids[i % ids.Length]}{i}" : $"id{i}").ToArray() : keyed == 3 ? ids : [];
            texts = keyed is 1 or 2 ? Enumerable.Range(0, count).Select(i => $"text {i} {(texts.Length > 0 ? texts[i % texts.Length] : "")}").ToArray() : keyed == 3 ? texts : [];
            int elementSize = dtype == DType.Float16 ? 2 : 4;
            var values = Enumerable.Range(0, count * dims).Select(i => pool[i % pool.Length]).ToArray();
            if (poison is { } bad && values.Length > 0) values[values.Length / 2] = bad;
            byte[] data = dtype == DType.Float16
                ? MemoryMarshal.AsBytes(values.Select(v => (Half)v).ToArray().AsSpan()).ToArray()
                : MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
            data = data.AsSpan(0, Math.Max(0, Math.Min(data.Length, data.Length + byteDelta))).ToArray();
            if (byteDelta > 0) data = [.. data, 0];
            var request = new PutRequest { Model = model, Kind = kind, Ids = { ids }, Texts = { texts } };
            if (!vectorsMissing || count > 0)
            {
                request.Vectors = new Vectors { Count = (uint)count, Dims = (uint)dims, Dtype = dtype, Data = ByteString.CopyFrom(data) };
            }
            bool finite = dtype == DType.Float16 ? values.All(v => Half.IsFinite((Half)v)) : values.All(float.IsFinite);
            string? breaks = request.Vectors is null ? "vectors missing"
                : ModelProblem(model) ?? KindProblem(kind) ?? DTypeProblem(dtype)
                ?? (ids.Length == 0 && texts.Length == 0 ? "no ids and no texts" : null)
                ?? (ids.Length > 0 && ids.Length != count || texts.Length > 0 && texts.Length != count ? "keys and rows differ in number" : null)
                ?? IdsProblem(ids) ?? TextsProblem(texts)
                ?? (dims is < 1 or > MaxDims ? "dims out of range" : null)
                ?? (byteDelta != 0 && count * dims > 0 ? "wrong byte count" : null)
                ?? (!finite ? "NaN or infinity" : null)
                ?? (model == Wire.MiniLM && dims != 384 || model == StoreModel && dims != 8 ? "dims differ from the model's" : null);
            return new Fuzzed("Put", request, breaks);
        });

    private static readonly Gen<Fuzzed> Scores = Gen.Select(
            Gen.Frequency((4, Gen.Const(StoreModel)), (1, ModelNames)), Texts.Array[0, 4], Texts.Array[0, 4], Texts.Array[0, 4], Gen.UInt,
        (model, queries, documentIds, documentTexts, topK) =>
        {
            if (model == Wire.MiniLM)
            {
                // As for Embed: only a few short texts may reach the model.
                queries = queries.Where(q => q.Length < 64).Take(2).ToArray();
                documentTexts = documentTexts.Where(q => q.Length < 64).Take(2).ToArray();
            }
            var request = new ScoreRequest { Model = model, Queries = { queries }, DocumentIds = { documentIds }, DocumentTexts = { documentTexts }, TopK = topK };
            string? breaks = ModelProblem(model)
                ?? (documentIds.Length > 0 && documentTexts.Length > 0 && documentIds.Length != documentTexts.Length ? "document ids and texts differ in length" : null)
                ?? UnknownModelProblem(model);
            return new Fuzzed("Score", request, breaks);
        });

    private static readonly Gen<Fuzzed> Invalidates = Gen.Select(
            Gen.Frequency((1, Gen.OneOf(StoreModel, "fuzz-new-a")), (3, ModelNames.Where(m => m != Wire.MiniLM))), Kinds,
        (model, kind) => new Fuzzed("Invalidate", new InvalidateRequest { Model = model, Kind = kind },
            ModelProblem(model) ?? (kind is Kind.Unspecified or Kind.Query or Kind.Document ? null : "unknown kind") ?? UnknownModelProblem(model)));

    /// <summary>One query's candidates: mostly stored ids, some unknown or invalid, with one text per id, none, or a wrong number.</summary>
    private static readonly Gen<QueryCandidates> CandidateLists = Gen.Select(
        Gen.Frequency(
            (6, Gen.OneOf(StoredDocuments).Array[0, 6]),
            (2, Texts.Array[0, 4]),
            (1, Gen.Int[MaxRows - 1, MaxRows + 2].Select(n => Enumerable.Range(0, n).Select(i => $"doc{i}").ToArray()))),
        Gen.Frequency((4, Gen.Const(0)), (2, Gen.Const(1)), (1, Gen.OneOf(-1, 1, 2))),
        Texts,
        (ids, texts, text) =>
        {
            var candidates = new QueryCandidates { Ids = { ids } };
            // 0: no texts; 1: one a id (some empty: no text for that id); otherwise that many more or fewer than ids.
            if (texts == 1) candidates.Texts.AddRange(ids.Select((_, i) => i % 3 == 2 ? "" : $"{text} {i}"));
            else if (texts != 0) candidates.Texts.AddRange(Enumerable.Range(0, Math.Max(0, ids.Length + texts)).Select(i => $"text {i}"));
            return candidates;
        });

    /// <summary>
    /// Score with per-query candidates (reranking): one list a query or a wrong number of lists, mixed or not with
    /// document lists, and at the pair and distinct-document limits (16 or 17 queries of 60 candidates around 1,000
    /// pairs; 80 distinct candidates over 64 rows).
    /// </summary>
    private static readonly Gen<Fuzzed> Reranks = Gen.Select(
            Gen.Frequency((6, Gen.Const(RerankModel)), (1, ModelNames)),
            Gen.Frequency((6, Gen.OneOf(StoredQueries).Array[0, 4]), (1, Texts.Array[0, 3])),
            CandidateLists.Array[1, 5],
            Gen.Frequency((12, Gen.Const(0)), (2, Gen.Const(1)), (1, Gen.OneOf(2, 3)), (1, Gen.OneOf(16, 17, 80))),
            Gen.Frequency((3, Gen.Const(0u)), (2, Gen.UInt[1, 8]), (1, Gen.UInt)),
        (model, queries, lists, shape, topK) =>
        {
            if (shape is 16 or 17)
            {
                queries = StoredQueries[..shape];
                lists = [.. queries.Select(_ => new QueryCandidates { Ids = { StoredDocuments[..60] } })];
            }
            else if (shape == 80)
            {
                queries = StoredQueries[..2];
                lists = [.. queries.Select((_, q) => new QueryCandidates { Ids = { Enumerable.Range(q * 40, 40).Select(i => $"doc{i}") } })];
            }
            else if (shape != 1 && queries.Length > 0)
            {
                // One list a query, as a well-formed rerank has.
                lists = [.. queries.Select((_, q) => lists[q % lists.Length].Clone())];
            }
            if (model == Wire.MiniLM)
            {
                // As for Embed: only a few short texts may reach the model.
                queries = [.. queries.Where(q => q.Length < 64).Take(2)];
                foreach (var list in lists) list.Texts.Clear();
            }
            var request = new ScoreRequest { Model = model, Queries = { queries }, Candidates = { lists }, TopK = topK };
            if (shape == 2) request.DocumentIds.Add("doc0");
            if (shape == 3) request.DocumentTexts.Add("text 0");
            int pairs = lists.Sum(l => l.Ids.Count);
            string? breaks = ModelProblem(model)
                ?? (shape is 2 or 3 ? "candidates mixed with document_ids or document_texts" : null)
                ?? (lists.Length != queries.Length ? "candidate lists and queries differ in number" : null)
                ?? lists.Select((l, q) => l.Texts.Count != 0 && l.Texts.Count != l.Ids.Count ? $"candidates[{q}] ids and texts differ in number" : IdsProblem(l.Ids))
                    .FirstOrDefault(p => p is not null)
                ?? (pairs > MaxScores ? "too many pairs" : null)
                ?? (lists.SelectMany(l => l.Ids).Distinct().Count() > MaxRows ? "too many distinct candidates" : null)
                ?? TextsProblem(queries)
                ?? UnknownModelProblem(model);
            return new Fuzzed("Score candidates", request, breaks);
        });

    /// <summary>
    /// Ways to spoil a serialised request (or to replace it), each with its own position and bytes: random bytes;
    /// truncated; one byte changed; an unknown field of each wire type (valid protobuf); a known field number with
    /// any wire type (3, 4: groups, 6, 7: none); a length past the end; invalid UTF-8 in a string; garbage in a
    /// nested message (Put's vectors, Score's candidates); unchanged.
    /// </summary>
    private static readonly Gen<Func<byte[], byte[]>> Spoilers = Gen.Select(Gen.Int[0, 9], Gen.Int[0, int.MaxValue], Gen.Byte.Array[0, 48],
        (how, at, junk) => how switch
        {
            0 => _ => junk,
            1 => m => m[..(m.Length == 0 ? 0 : at % m.Length)],
            2 => m => m.Length == 0 ? junk : [.. m[..(at % m.Length)], (byte)(m[at % m.Length] ^ (1 + at % 255)), .. m[(at % m.Length + 1)..]],
            3 => m => [.. m, .. UnknownField(100 + at % 10_000, at / 10_000 % 4, junk)],
            4 => m => [.. Tag(1 + at % 6, at / 6 % 8), .. junk, .. m],
            5 => m => [.. m, .. Tag(1 + at % 6, 2), .. Varint((ulong)(junk.Length + 1 + at % 100_000)), .. junk],
            6 => m => [.. m, .. Tag(at % 2 == 0 ? 1 : 3, 2), .. Varint(3), 0x61, 0xC3, 0x28],
            7 => m => [.. m, .. Tag(at % 2 == 0 ? 5 : 6, 2), .. Varint((ulong)junk.Length), .. junk],
            _ => (Func<byte[], byte[]>)(m => m),
        });

    /// <summary>One to four Embeds on one stream: answered in order until the first refused one ends the call.</summary>
    private static readonly Gen<Fuzzed> EmbedStreams = Embeds.Array[1, 4].Select(messages =>
        new Fuzzed("EmbedStream", messages[0].Request, messages.Select(m => m.Breaks).FirstOrDefault(b => b is not null), messages));

    private static readonly Gen<Fuzzed> ListModels = Gen.Const(new Fuzzed("ListModels", new ListModelsRequest(), null));

    /// <summary>Valid requests of every method, spoiled (one spoiler a message of a stream), sent as raw bytes.</summary>
    private static readonly Gen<Fuzzed> RawCalls = Gen.Select(
        // Put creates models: only ever to the fuzzer's own, so that no spoiled name becomes one the others expect to be unknown.
        Gen.OneOf(Embeds, EmbedStreams, Gets, Puts.Where(p => ((PutRequest)p.Request).Model == StoreModel), Scores, Reranks, Invalidates, ListModels),
        Spoilers.Array[4],
        (valid, spoilers) =>
        {
            var messages = valid.Stream?.Select(m => m.Request) ?? [valid.Request];
            return new Fuzzed($"raw {valid.Rpc}", valid.Request, Breaks: null, Raw: [.. messages.Select((m, i) => spoilers[i % spoilers.Length](m.ToByteArray()))]);
        });

    private static readonly Gen<Fuzzed> Requests = Gen.Frequency(
        (6, Embeds), (2, EmbedStreams), (4, Gets), (5, Puts), (2, Scores), (2, Reranks), (1, Invalidates), (1, ListModels), (4, RawCalls));

    [Fact]
    public async Task Any_request_gets_a_valid_reply_or_a_documented_error_and_the_server_keeps_its_rows()
    {
        var server = await StartServerAsync(
            $"--EmbeddingCache:MaxRowsPerRequest={MaxRows}", $"--EmbeddingCache:MaxTextLength={MaxTextLength}",
            $"--EmbeddingCache:MaxIdLength={MaxIdLength}", $"--EmbeddingCache:MaxDims={MaxDims}",
            $"--EmbeddingCache:MaxReceiveMessageBytes={MaxMessageBytes}", $"--EmbeddingCache:MaxScoresPerRequest={MaxScores}",
            "--EmbeddingCache:RefusalsPerSecond=0"); // it sends refused calls flat out on purpose
        var client = server.Client;
        var kept = Wire.Pack([0.25f, -1f, 3.5f, float.Epsilon], 4);
        await client.PutAsync(new PutRequest { Model = KeptModel, Kind = Kind.Document, Ids = { "row" }, Vectors = kept });
        await client.PutAsync(new PutRequest { Model = StoreModel, Kind = Kind.Query, Ids = { "q" }, Vectors = Wire.Pack(new float[8], 8) });
        var fixtures = new Random(13);
        await client.PutAsync(new PutRequest
        {
            Model = RerankModel,
            Kind = Kind.Query,
            Texts = { StoredQueries },
            Vectors = Wire.Pack(Wire.RandomRows(fixtures, StoredQueries.Length, 8), 8),
        });
        await client.PutAsync(new PutRequest
        {
            Model = RerankModel,
            Kind = Kind.Document,
            Ids = { StoredDocuments },
            Vectors = Wire.Pack(Wire.RandomRows(fixtures, StoredDocuments.Length, 8), 8),
        });
        var channels = Enumerable.Range(0, Connections).Select(_ => GrpcChannel.ForAddress(server.Address, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = null,
            MaxSendMessageSize = null,
        })).ToArray();
        var clients = channels.Select(channel => new CacheClient(channel)).ToArray();
        var invokers = channels.Select(channel => channel.CreateCallInvoker()).ToArray();
        long calls = 0;

        long target = TestSettings.Int("EMBCACHE_FUZZ_INPUTS") ?? SuiteInputs;
        var timeLimit = TimeSpan.FromMinutes(TestSettings.Int("EMBCACHE_FUZZ_MINUTES") ?? 60);
        var outcomes = new ConcurrentDictionary<string, long>();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        long inputs = 0;
        // In chunks, so that a long run stops at its time limit with a report of what it did.
        while (inputs < target && watch.Elapsed < timeLimit)
        {
            long chunk = Math.Min(ChunkInputs, target - inputs);
            // On a pool thread: this method may have resumed inline on the HTTP/2 connection's reading continuation, and
            // the sampler blocks on calls whose replies that same continuation must read (a hang seen in the suite).
            await Task.Run(() => Requests.Sample(fuzzed =>
            {
                var connection = (int)(Interlocked.Increment(ref calls) % Connections);
                var code = fuzzed.Raw is null ? Send(clients[connection], fuzzed) : SendRaw(invokers[connection], fuzzed);
                outcomes.AddOrUpdate($"{fuzzed.Rpc} {code}", 1, (_, n) => n + 1);
            }, iter: chunk, threads: SamplerThreads, print: f => $"{f.Rpc} (breaks: {f.Breaks ?? "nothing known"}) {Printable(f)}"));
            inputs += chunk;
        }

        foreach (var channel in channels) channel.Dispose();

        Assert.False(server.HasExited, "the server died under fuzzing");
        var health = await new Grpc.Health.V1.Health.HealthClient(server.Channel).CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
        var reread = await client.GetAsync(new GetRequest { Model = KeptModel, Kind = Kind.Document, Ids = { "row" } });
        Assert.Equal(kept.Data, reread.Vectors.Data);
        Assert.Empty(server.ErrorLines());

        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture,
            $"request fuzz: {inputs} fuzzed calls ({outcomes.Where(o => o.Key.StartsWith("EmbedStream ", StringComparison.Ordinal)).Sum(o => o.Value)} of them EmbedStream sequences of 1 to 4 messages) " +
            $"against one server in {watch.Elapsed.TotalSeconds:F0} s{(inputs < target ? $" (stopped by the {timeLimit.TotalMinutes:F0}-minute limit before {target})" : "")}, each answered with a valid reply or a documented status; the server still SERVING, its kept row intact, no error logged");
        report.AppendLine(CultureInfo.InvariantCulture,
            $"stream writes the .NET client left waiting after their call was answered and cancelled (not the server's doing; counted, not awaited): {Interlocked.Read(ref _abandonedWrites)}");
        report.AppendLine("by RPC and status:");
        foreach (var (key, count) in outcomes.OrderBy(o => o.Key, StringComparer.Ordinal)) report.AppendLine(CultureInfo.InvariantCulture, $"  {key}: {count}");
        Output.WriteLine(report.ToString());
        await TestSettings.KeepLongRunReportAsync("request-fuzz.txt", report.ToString(), target > SuiteInputs);
    }

    /// <summary>Sends one request; returns its status code after checking the reply or the error.</summary>
    private static StatusCode Send(CacheClient client, Fuzzed fuzzed)
    {
        try
        {
            switch (fuzzed.Request)
            {
                case EmbedRequest when fuzzed.Stream is { } stream:
                    SendStreamAsync(client, stream).GetAwaiter().GetResult();
                    break;
                case EmbedRequest embed:
                    CheckEmbedded(embed, client.Embed(embed, deadline: Deadline()));
                    break;
                case GetRequest get:
                    var got = client.Get(get, deadline: Deadline());
                    CheckVectors(got.Vectors, get.Ids.Count + get.Texts.Count, get.Dtype);
                    Assert.Equal((uint)(get.Ids.Count + get.Texts.Count), got.FoundCount + got.MissingCount);
                    break;
                case PutRequest put:
                    var stored = client.Put(put, deadline: Deadline()).Stored;
                    Assert.Equal(put.Vectors?.Count, stored);
                    break;
                case ScoreRequest { Candidates.Count: > 0 } rerank:
                    var reranked = client.Score(rerank, deadline: Deadline());
                    int pairs = rerank.Candidates.Sum(c => c.Ids.Count);
                    Assert.Equal((uint)rerank.Queries.Count, reranked.QueryCount);
                    Assert.Equal(rerank.Candidates.Select(c => (uint)c.Ids.Count), reranked.CandidateCounts);
                    Assert.Equal(4 * pairs, reranked.CandidateScores.Length);
                    Assert.Equal(pairs, reranked.CandidateSources.Count);
                    Assert.Equal(rerank.TopK > 0 ? rerank.Queries.Count : 0, reranked.Top.Count);
                    break;
                case ScoreRequest score:
                    var scored = client.Score(score, deadline: Deadline());
                    Assert.Equal((uint)score.Queries.Count, scored.QueryCount);
                    Assert.Equal((uint)Math.Max(score.DocumentIds.Count, score.DocumentTexts.Count), scored.DocumentCount);
                    Assert.Equal(4 * (int)(scored.QueryCount * scored.DocumentCount), scored.Scores.Length);
                    break;
                case InvalidateRequest invalidate:
                    client.Invalidate(invalidate, deadline: Deadline());
                    break;
                case ListModelsRequest list:
                    Assert.Contains(client.ListModels(list, deadline: Deadline()).Models, m => m.Name == KeptModel);
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(fuzzed), fuzzed.Request, "no such request");
            }
        }
        catch (RpcException e)
        {
            Assert.True(Documented.Contains(e.StatusCode), $"undocumented {e.StatusCode}: {e.Status.Detail}");
            Assert.False(string.IsNullOrWhiteSpace(e.Status.Detail), $"{e.StatusCode} without a message");
            return e.StatusCode;
        }
        Assert.True(fuzzed.Breaks is null, $"accepted although it breaks a rule: {fuzzed.Breaks}");
        return StatusCode.OK;
    }

    /// <summary>
    /// Sends raw bytes to the method the request was made for; returns the status. What protobuf cannot parse is
    /// INVALID_ARGUMENT (on a stream: once the messages before it are answered); what it can parse gets a reply of the
    /// method's response type or a documented status.
    /// </summary>
    private static StatusCode SendRaw(CallInvoker invoker, Fuzzed fuzzed)
    {
        string name = fuzzed.Rpc.Split(' ')[1];
        var method = EmbeddingCache.Protocol.V1.EmbeddingCache.Descriptor.FindMethodByName(name);
        byte[][] messages = fuzzed.Raw!;
        int firstUnparsable = Array.FindIndex(messages, m => !Parses(method.InputType.Parser, m));
        var answered = new StrongBox<int>();
        try
        {
            if (method.IsClientStreaming)
            {
                SendRawStreamAsync(invoker, name, messages, method.OutputType.Parser, answered).GetAwaiter().GetResult();
            }
            else
            {
                method.OutputType.Parser.ParseFrom(invoker.BlockingUnaryCall(RawMethod(name, MethodType.Unary), null, new CallOptions(deadline: Deadline()), messages[0]));
                answered.Value = 1;
            }
        }
        catch (RpcException e)
        {
            Assert.True(Documented.Contains(e.StatusCode), $"undocumented {e.StatusCode}: {e.Status.Detail}");
            Assert.False(string.IsNullOrWhiteSpace(e.Status.Detail), $"{e.StatusCode} without a message");
            Assert.True(firstUnparsable != 0 || messages[0].Length > MaxMessageBytes || e.StatusCode == StatusCode.InvalidArgument,
                $"a message of {messages[0].Length} bytes protobuf cannot parse got {e.StatusCode}: {e.Status.Detail}");
            Assert.True(firstUnparsable < 0 || answered.Value <= firstUnparsable, $"{answered.Value} replies although message {firstUnparsable} cannot be parsed");
            return e.StatusCode;
        }
        Assert.True(firstUnparsable < 0, $"message {firstUnparsable} was accepted although protobuf cannot parse it");
        Assert.Equal(messages.Length, answered.Value);
        return StatusCode.OK;
    }

    private static Task SendRawStreamAsync(CallInvoker invoker, string name, byte[][] messages, MessageParser replies, StrongBox<int> answered) =>
        ExchangeAsync(
            token => invoker.AsyncDuplexStreamingCall(RawMethod(name, MethodType.DuplexStreaming), null, new CallOptions(deadline: Deadline(), cancellationToken: token)),
            messages,
            reply =>
            {
                replies.ParseFrom(reply);
                answered.Value++;
            });

    /// <summary>
    /// Writes the messages while reading the replies, each handed to <paramref name="onReply"/>; a refused message
    /// ends the call with its status, thrown as an RpcException. When the replies have ended the call is cancelled,
    /// which ends a write still waiting for window on a stream the server finished without reading it to its end:
    /// disposing the call alone left such a write waiting forever (a long run stalled so). A call that outlives
    /// <see cref="CallDeadline"/> fails the run; a write still waiting <see cref="AbandonWriteAfter"/> after its
    /// answered call was cancelled is counted in <see cref="_abandonedWrites"/>.
    /// </summary>
    private static async Task ExchangeAsync<TRequest, TReply>(
        Func<CancellationToken, AsyncDuplexStreamingCall<TRequest, TReply>> start, IReadOnlyList<TRequest> messages, Action<TReply> onReply)
    {
        using var ended = new CancellationTokenSource();
        using var call = start(ended.Token);
        var sending = Task.Run(async () =>
        {
            try
            {
                foreach (var message in messages) await call.RequestStream.WriteAsync(message, ended.Token);
                await call.RequestStream.CompleteAsync();
            }
            catch (Exception e) when (e is RpcException or InvalidOperationException or OperationCanceledException)
            {
                // The call ended early (a refused message) or was cancelled once answered: its status is the replies'.
            }
        });
        try
        {
            var moving = call.ResponseStream.MoveNext(CancellationToken.None);
            while (await moving.WaitAsync(CallDeadline + TimeSpan.FromSeconds(10)))
            {
                onReply(call.ResponseStream.Current);
                moving = call.ResponseStream.MoveNext(CancellationToken.None);
            }
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"a stream of {messages.Count} messages had no reply or status within its {CallDeadline.TotalSeconds:F0} s deadline");
        }
        finally
        {
            await ended.CancelAsync();
            if (await Task.WhenAny(sending, Task.Delay(AbandonWriteAfter)) != sending)
            {
                // The call has its status: the server answered. A write the client library leaves waiting after that is
                // counted and reported, not waited for (it was seen about once in 10,000 calls, never alone).
                Interlocked.Increment(ref _abandonedWrites);
            }
        }
    }

    private static DateTime Deadline() => DateTime.UtcNow + CallDeadline;

    private static Method<byte[], byte[]> RawMethod(string name, MethodType type) => new(type, ServiceName, name, Bytes, Bytes);

    private static bool Parses(MessageParser parser, byte[] message)
    {
        try
        {
            parser.ParseFrom(message);
            return true;
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or DecoderFallbackException)
        {
            return false;
        }
    }

    private static byte[] Varint(ulong value)
    {
        var bytes = new List<byte>();
        for (; value >= 0x80; value >>= 7) bytes.Add((byte)(value | 0x80));
        bytes.Add((byte)value);
        return [.. bytes];
    }

    private static byte[] Tag(int field, int wireType) => Varint((ulong)(field << 3 | wireType));

    /// <summary>A field no request has, well formed: varint, fixed64, length-delimited or fixed32.</summary>
    private static byte[] UnknownField(int field, int kind, byte[] junk) => kind switch
    {
        0 => [.. Tag(field, 0), .. Varint((ulong)junk.Length << 40 | 7)],
        1 => [.. Tag(field, 1), .. junk.Concat(new byte[8]).Take(8)],
        2 => [.. Tag(field, 2), .. Varint((ulong)junk.Length), .. junk],
        _ => [.. Tag(field, 5), .. junk.Concat(new byte[4]).Take(4)],
    };

    private static void CheckEmbedded(EmbedRequest embed, EmbedResponse embedded)
    {
        CheckVectors(embedded.Vectors, embed.Texts.Count, embed.Dtype);
        Assert.Equal(embed.Texts.Count, embedded.Sources.Count);
        Assert.Equal((uint)embed.Texts.Count, embedded.CachedCount + embedded.ComputedCount + embedded.MissingCount);
        if (!embed.CacheOnly) Assert.Equal(0u, embedded.MissingCount);
    }

    /// <summary>
    /// Sends the stream's messages while reading its replies: each reply answers the message of its position; a
    /// refused message ends the call with its status (thrown as an RpcException), so no reply follows it.
    /// </summary>
    private static async Task SendStreamAsync(CacheClient client, Fuzzed[] stream)
    {
        int answered = 0;
        await ExchangeAsync(
            token => client.EmbedStream(deadline: Deadline(), cancellationToken: token),
            [.. stream.Select(m => (EmbedRequest)m.Request)],
            reply =>
            {
                Assert.True(answered < stream.Length, "more replies than messages");
                CheckEmbedded((EmbedRequest)stream[answered].Request, reply);
                Assert.True(stream[answered].Breaks is null, $"message {answered} answered although it breaks a rule: {stream[answered].Breaks}");
                answered++;
            });
        Assert.Equal(stream.Length, answered);
    }

    private static void CheckVectors(Vectors vectors, int rows, DType asked)
    {
        Assert.Equal((uint)rows, vectors.Count);
        Assert.Equal(asked == DType.Float16 ? DType.Float16 : DType.Float32, vectors.Dtype);
        Assert.Equal(rows * (int)vectors.Dims * (asked == DType.Float16 ? 2 : 4), vectors.Data.Length);
    }

    private static string? ModelProblem(string model) => ModelName.Problem(OnTheWire(model)) is { } problem ? $"bad model name: {problem}" : null;

    /// <summary>Valid names this server does not know: only Put creates a model.</summary>
    private static string? UnknownModelProblem(string model) =>
        model is Wire.MiniLM or StoreModel or RerankModel or "fuzz-new-a" ? null : $"unknown model '{model}' (unless a Put created it)";

    private static string? KindProblem(Kind kind) => kind is Kind.Query or Kind.Document ? null : $"kind {(int)kind}";

    private static string? DTypeProblem(DType dtype) => dtype is DType.Unspecified or DType.Float32 or DType.Float16 ? null : $"dtype {(int)dtype}";

    private static string? TextsProblem(IReadOnlyCollection<string> texts) =>
        texts.Count > MaxRows ? "too many texts" : texts.Any(t => t.Length > MaxTextLength) ? "a text over the length limit" : null;

    private static string? IdsProblem(IReadOnlyCollection<string> ids) =>
        ids.Count > MaxRows ? "too many ids" : ids.Any(i => i.Length is 0 or > MaxIdLength) ? "an empty or over-long id" : null;

    /// <summary>Protobuf writes strings as UTF-8, so a lone surrogate arrives as U+FFFD.</summary>
    private static string OnTheWire(string text) => Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(text));

    private static string Printable(Fuzzed fuzzed)
    {
        var text = fuzzed.Raw is { } raw
            ? $"{string.Join(" | ", raw.Select(Hex))} (made from {Printable(fuzzed.Request)})"
            : Printable(fuzzed.Request);
        return text.Length > 1200 ? text[..1200] + "..." : text;
    }

    /// <summary>As JSON; one with a lone surrogate, which JSON cannot hold, as the hex of its protobuf bytes.</summary>
    private static string Printable(IMessage request)
    {
        try
        {
            return request.ToString() ?? "";
        }
        catch (ArgumentException)
        {
            return $"{request.Descriptor.Name} {Hex(request.ToByteArray())}";
        }
    }

    private static string Hex(byte[] bytes) => Convert.ToHexString(bytes.AsSpan(0, Math.Min(bytes.Length, 300)));
}
