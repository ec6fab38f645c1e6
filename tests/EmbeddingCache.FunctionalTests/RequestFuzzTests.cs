using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using CsCheck;
using EmbeddingCache.Engine;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Google.Protobuf;
using Grpc.Core;
using Xunit.Abstractions;
using CacheClient = EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient;

namespace EmbeddingCache.FunctionalTests;

/// <summary>
/// Property-based fuzzing of request validation against one real server: random Embed, Get, Put, Score and
/// Invalidate requests (odd model names, unknown enum values, random unicode and NUL, lengths over the limits,
/// mismatched ids, wrong byte counts, NaN, zero and huge dims). Each gets a well-formed reply or a documented
/// status with a message, a request that breaks a rule is never accepted, and the server neither dies nor loses
/// a row it stored before. EmbedStream gets sequences of such Embeds, ListModels is asked between them.
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
        // Over the message size limit: refused by gRPC before the server reads it.
        (1, Gen.Int[1, 3].Select(n => new[] { new string('\u00e9', MaxMessageBytes / 2 * n) })));

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
    private sealed record Fuzzed(string Rpc, IMessage Request, string? Breaks, Fuzzed[]? Stream = null);

    private static readonly Gen<Fuzzed> Embeds = Gen.Select(ModelNames, Kinds, TextLists, Gen.Frequency((3, Gen.Const((string[]?)null)), (1, Texts.Array[0, 6].Select(a => (string[]?)a))), DTypes, Gen.Bool,
        (model, kind, texts, ids, dtype, cacheOnly) =>
        {
            // Computing is slow on a shared 2-core machine: only a few short texts may reach the model.
            cacheOnly |= model == Wire.MiniLM && (texts.Length > 3 || texts.Any(t => t.Length > 64));
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

    /// <summary>One to four Embeds on one stream: answered in order until the first refused one ends the call.</summary>
    private static readonly Gen<Fuzzed> EmbedStreams = Embeds.Array[1, 4].Select(messages =>
        new Fuzzed("EmbedStream", messages[0].Request, messages.Select(m => m.Breaks).FirstOrDefault(b => b is not null), messages));

    private static readonly Gen<Fuzzed> ListModels = Gen.Const(new Fuzzed("ListModels", new ListModelsRequest(), null));

    private static readonly Gen<Fuzzed> Requests = Gen.Frequency(
        (6, Embeds), (2, EmbedStreams), (4, Gets), (5, Puts), (2, Scores), (1, Invalidates), (1, ListModels));

    [Fact]
    public async Task Any_request_gets_a_valid_reply_or_a_documented_error_and_the_server_keeps_its_rows()
    {
        var server = await StartServerAsync(
            $"--EmbeddingCache:MaxRowsPerRequest={MaxRows}", $"--EmbeddingCache:MaxTextLength={MaxTextLength}",
            $"--EmbeddingCache:MaxIdLength={MaxIdLength}", $"--EmbeddingCache:MaxDims={MaxDims}",
            $"--EmbeddingCache:MaxReceiveMessageBytes={MaxMessageBytes}", "--EmbeddingCache:MaxScoresPerRequest=1000",
            "--EmbeddingCache:RefusalsPerSecond=0"); // it sends refused calls flat out on purpose
        var client = server.Client;
        var kept = Wire.Pack([0.25f, -1f, 3.5f, float.Epsilon], 4);
        await client.PutAsync(new PutRequest { Model = KeptModel, Kind = Kind.Document, Ids = { "row" }, Vectors = kept });
        await client.PutAsync(new PutRequest { Model = StoreModel, Kind = Kind.Query, Ids = { "q" }, Vectors = Wire.Pack(new float[8], 8) });

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
                var code = Send(client, fuzzed);
                outcomes.AddOrUpdate($"{fuzzed.Rpc} {code}", 1, (_, n) => n + 1);
            }, iter: chunk, threads: 2, print: f => $"{f.Rpc} (breaks: {f.Breaks ?? "nothing known"}) {Printable(f.Request)}"));
            inputs += chunk;
        }

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
                    CheckEmbedded(embed, client.Embed(embed));
                    break;
                case GetRequest get:
                    var got = client.Get(get);
                    CheckVectors(got.Vectors, get.Ids.Count + get.Texts.Count, get.Dtype);
                    Assert.Equal((uint)(get.Ids.Count + get.Texts.Count), got.FoundCount + got.MissingCount);
                    break;
                case PutRequest put:
                    var stored = client.Put(put).Stored;
                    Assert.Equal(put.Vectors?.Count, stored);
                    break;
                case ScoreRequest score:
                    var scored = client.Score(score);
                    Assert.Equal((uint)score.Queries.Count, scored.QueryCount);
                    Assert.Equal((uint)Math.Max(score.DocumentIds.Count, score.DocumentTexts.Count), scored.DocumentCount);
                    Assert.Equal(4 * (int)(scored.QueryCount * scored.DocumentCount), scored.Scores.Length);
                    break;
                case InvalidateRequest invalidate:
                    client.Invalidate(invalidate);
                    break;
                case ListModelsRequest list:
                    Assert.Contains(client.ListModels(list).Models, m => m.Name == KeptModel);
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(fuzzed), fuzzed.Request, "no such request");
            }
        }
        catch (RpcException e)
        {
            Assert.Contains(e.StatusCode, Documented);
            Assert.False(string.IsNullOrWhiteSpace(e.Status.Detail), $"{e.StatusCode} without a message");
            return e.StatusCode;
        }
        Assert.True(fuzzed.Breaks is null, $"accepted although it breaks a rule: {fuzzed.Breaks}");
        return StatusCode.OK;
    }

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
        using var call = client.EmbedStream();
        var sending = Task.Run(async () =>
        {
            try
            {
                foreach (var message in stream) await call.RequestStream.WriteAsync((EmbedRequest)message.Request);
                await call.RequestStream.CompleteAsync();
            }
            catch (RpcException)
            {
                // The call ended early (a refused message): its status is read from the replies.
            }
            catch (InvalidOperationException)
            {
                // Writing after the call completed: likewise.
            }
        });
        int answered = 0;
        try
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                Assert.True(answered < stream.Length, "more replies than messages");
                CheckEmbedded((EmbedRequest)stream[answered].Request, call.ResponseStream.Current);
                Assert.True(stream[answered].Breaks is null, $"message {answered} answered although it breaks a rule: {stream[answered].Breaks}");
                answered++;
            }
        }
        finally
        {
            await sending;
        }
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
        model is Wire.MiniLM or StoreModel or "fuzz-new-a" ? null : $"unknown model '{model}' (unless a Put created it)";

    private static string? KindProblem(Kind kind) => kind is Kind.Query or Kind.Document ? null : $"kind {(int)kind}";

    private static string? DTypeProblem(DType dtype) => dtype is DType.Unspecified or DType.Float32 or DType.Float16 ? null : $"dtype {(int)dtype}";

    private static string? TextsProblem(IReadOnlyCollection<string> texts) =>
        texts.Count > MaxRows ? "too many texts" : texts.Any(t => t.Length > MaxTextLength) ? "a text over the length limit" : null;

    private static string? IdsProblem(IReadOnlyCollection<string> ids) =>
        ids.Count > MaxRows ? "too many ids" : ids.Any(i => i.Length is 0 or > MaxIdLength) ? "an empty or over-long id" : null;

    /// <summary>Protobuf writes strings as UTF-8, so a lone surrogate arrives as U+FFFD.</summary>
    private static string OnTheWire(string text) => Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(text));

    private static string Printable(IMessage request)
    {
        var text = request.ToString() ?? "";
        return text.Length > 600 ? text[..600] + "..." : text;
    }
}
