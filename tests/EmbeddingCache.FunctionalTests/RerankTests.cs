using System.Runtime.InteropServices;
using EmbeddingCache.FunctionalTests.Infrastructure;
using EmbeddingCache.Protocol.V1;
using Grpc.Core;
using Xunit.Abstractions;

namespace EmbeddingCache.FunctionalTests;

/// <summary>Score with a candidate list per query (BEIR's reranking shape), against a real server.</summary>
[Collection(SharedServerCollection.Name)]
public sealed class RerankTests(InProcessServer shared, ITestOutputHelper output) : SharedServerTest(shared, output)
{
    private const int Dims = 8;
    private const string Store = "rerank-store";

    [Fact]
    public async Task Each_query_is_scored_against_its_own_candidates_and_each_document_is_looked_up_once()
    {
        var server = UseSharedServer();
        var (queries, queryRows, documentRows) = await PutStoreOnlyCorpusAsync(server.Client, queryCount: 3, documentCount: 5);
        string[][] candidates = [["d0", "d1", "d2", "d1"], ["d2", "d3"], [], ["d4", "d0"]];
        var request = new ScoreRequest { Model = Store, Queries = { queries.Append(queries[0]) }, TopK = 2 };
        foreach (var list in candidates) request.Candidates.Add(new QueryCandidates { Ids = { list } });
        long hitsBefore = await HitsAsync(server.Client);

        var reply = await server.Client.ScoreAsync(request);

        Assert.Equal(candidates.Select(c => (uint)c.Length), reply.CandidateCounts);
        var scores = MemoryMarshal.Cast<byte, float>(reply.CandidateScores.Span).ToArray();
        Assert.Equal(candidates.Sum(c => c.Length), scores.Length);
        Assert.All(reply.CandidateSources, source => Assert.Equal(RowSource.Cached, source));
        int pair = 0;
        for (int q = 0; q < candidates.Length; q++)
        {
            var query = queryRows.AsSpan(q % queries.Length * Dims, Dims);
            foreach (var id in candidates[q])
            {
                int d = int.Parse(id[1..], System.Globalization.CultureInfo.InvariantCulture);
                Assert.Equal(Wire.Cosine(query, documentRows.AsSpan(d * Dims, Dims)), scores[pair++], 5);
            }
        }
        // top[i] belongs to query i, an empty list included, and indexes that query's own candidates.
        Assert.Equal(candidates.Length, reply.Top.Count);
        Assert.Empty(reply.Top[2].Indexes);
        var firstQuery = scores.AsSpan(0, 4).ToArray();
        Assert.Equal(Enumerable.Range(0, 4).OrderByDescending(i => firstQuery[i]).ThenBy(i => i).Take(2).Select(i => (uint)i), reply.Top[0].Indexes);
        // 4 query texts and 5 distinct documents were looked up, not the 8 pairs.
        Assert.Equal(4 + 5, await HitsAsync(server.Client) - hitsBefore);
        Assert.Empty(server.ErrorLines());
    }

    [Fact]
    public async Task A_candidate_neither_cached_nor_given_a_text_scores_nan_and_is_missing_while_the_others_are_scored()
    {
        var server = UseSharedServer();
        var (queries, queryRows, documentRows) = await PutStoreOnlyCorpusAsync(server.Client, queryCount: 1, documentCount: 2);
        var request = new ScoreRequest { Model = Store, Queries = { queries }, TopK = 3 };
        request.Candidates.Add(new QueryCandidates { Ids = { "d0", "never-put", "d1" } });

        var reply = await server.Client.ScoreAsync(request);

        var scores = MemoryMarshal.Cast<byte, float>(reply.CandidateScores.Span).ToArray();
        Assert.Equal([RowSource.Cached, RowSource.Missing, RowSource.Cached], reply.CandidateSources);
        Assert.True(float.IsNaN(scores[1]));
        Assert.Equal(Wire.Cosine(queryRows, documentRows.AsSpan(0, Dims)), scores[0], 5);
        Assert.Equal(Wire.Cosine(queryRows, documentRows.AsSpan(Dims, Dims)), scores[2], 5);
        Assert.Equal(1u, reply.Top[0].Indexes[^1]);
    }

    [Fact]
    public async Task Candidates_missing_from_the_cache_are_computed_once_from_their_texts_and_stored_under_their_ids()
    {
        var server = await StartServerAsync();
        var client = server.Client;
        var texts = Wire.Texts(seed: 61, count: 3);
        string[] queries = ["what is dense retrieval?", "how do caches work?"];
        var request = new ScoreRequest { Model = Wire.MiniLM, Queries = { queries } };
        // "shared" is a candidate of both queries; the second query gives no text for it (empty: none), the first does.
        request.Candidates.Add(new QueryCandidates { Ids = { "p0", "shared" }, Texts = { texts[0], texts[1] } });
        request.Candidates.Add(new QueryCandidates { Ids = { "shared", "p2" }, Texts = { "", texts[2] } });

        var reply = await client.ScoreAsync(request);

        Assert.Equal(Enumerable.Repeat(RowSource.Computed, 4), reply.CandidateSources);
        var queryVectors = Wire.Floats((await client.EmbedAsync(new EmbedRequest { Model = Wire.MiniLM, Kind = Kind.Query, Texts = { queries } })).Vectors);
        var stored = await client.GetAsync(new GetRequest { Model = Wire.MiniLM, Kind = Kind.Document, Ids = { "p0", "shared", "p2" } });
        Assert.Equal(3u, stored.FoundCount);
        var documentVectors = Wire.Floats(stored.Vectors);
        var scores = MemoryMarshal.Cast<byte, float>(reply.CandidateScores.Span).ToArray();
        (int Query, int Document)[] pairs = [(0, 0), (0, 1), (1, 1), (1, 2)];
        for (int p = 0; p < pairs.Length; p++)
        {
            var (q, d) = pairs[p];
            Assert.Equal(Wire.Cosine(queryVectors.AsSpan(q * 384, 384), documentVectors.AsSpan(d * 384, 384)), scores[p], 5);
        }
        var models = await client.ListModelsAsync(new ListModelsRequest());
        // Misses: the two queries, then the three distinct documents by id and again by text; per pair it would be 2 + 4 + 4.
        Assert.Equal(8ul, models.Models.Single(m => m.Name == Wire.MiniLM).Misses);
        Assert.Empty(server.ErrorLines());
    }

    public static TheoryData<string, StatusCode, string> BadRequests() => new()
    {
        { "mixed with document_ids", StatusCode.InvalidArgument, "not both" },
        { "fewer lists than queries", StatusCode.InvalidArgument, "candidates has 1 entries but queries has 2" },
        { "texts not one per id", StatusCode.InvalidArgument, "candidates[0] has 2 ids but 1 texts" },
        { "empty id", StatusCode.InvalidArgument, "ids[1] is empty" },
        { "more pairs than allowed", StatusCode.ResourceExhausted, "hold 5 query x document pairs; at most 4" },
        { "unknown model", StatusCode.NotFound, "never-heard-of" },
    };

    [Fact]
    public async Task Bad_candidate_lists_get_their_status_and_a_clear_message_and_harm_nothing()
    {
        var server = await StartServerAsync("--EmbeddingCache:MaxScoresPerRequest=4");
        var (queries, _, _) = await PutStoreOnlyCorpusAsync(server.Client, queryCount: 2, documentCount: 2);
        foreach (var (name, expected, messagePart) in BadRequests().Select(row => ((string)row[0], (StatusCode)row[1], (string)row[2])))
        {
            var request = new ScoreRequest { Model = Store, Queries = { queries } };
            QueryCandidates Ids(params string[] ids) => new() { Ids = { ids } };
            switch (name)
            {
                case "mixed with document_ids": request.Candidates.Add([Ids("d0"), Ids("d1")]); request.DocumentIds.Add("d0"); break;
                case "fewer lists than queries": request.Candidates.Add(Ids("d0")); break;
                case "texts not one per id": request.Candidates.Add([new QueryCandidates { Ids = { "d0", "d1" }, Texts = { "t" } }, Ids("d1")]); break;
                case "empty id": request.Candidates.Add([Ids("d0", ""), Ids("d1")]); break;
                case "more pairs than allowed": request.Candidates.Add([Ids("d0", "d1", "d0"), Ids("d1", "d0")]); break;
                case "unknown model": request.Model = "never-heard-of"; request.Candidates.Add([Ids("d0"), Ids("d1")]); break;
            }

            var error = await Assert.ThrowsAsync<RpcException>(async () => await server.Client.ScoreAsync(request));

            Output.WriteLine($"{name}: {error.StatusCode}: {error.Status.Detail}");
            Assert.Equal(expected, error.StatusCode);
            Assert.Contains(messagePart, error.Status.Detail, StringComparison.Ordinal);
        }
        var good = new ScoreRequest { Model = Store, Queries = { queries }, Candidates = { new QueryCandidates { Ids = { "d0", "d1" } }, new QueryCandidates { Ids = { "d1" } } } };
        Assert.Equal(12, (await server.Client.ScoreAsync(good)).CandidateScores.Length);
        Assert.Empty(server.ErrorLines());
    }

    /// <summary>A store-only model holding query vectors (by text) and document vectors d0, d1, ... (by id).</summary>
    private static async Task<(string[] Queries, float[] QueryRows, float[] DocumentRows)> PutStoreOnlyCorpusAsync(
        EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient client, int queryCount, int documentCount)
    {
        var random = new Random(17);
        var queries = Enumerable.Range(0, queryCount).Select(q => $"query {q}").ToArray();
        var queryRows = Wire.RandomRows(random, queryCount, Dims);
        var documentRows = Wire.RandomRows(random, documentCount, Dims);
        await client.PutAsync(new PutRequest { Model = Store, Kind = Kind.Query, Texts = { queries }, Vectors = Wire.Pack(queryRows, Dims) });
        await client.PutAsync(new PutRequest
        {
            Model = Store,
            Kind = Kind.Document,
            Ids = { Enumerable.Range(0, documentCount).Select(d => $"d{d}") },
            Vectors = Wire.Pack(documentRows, Dims),
        });
        return (queries, queryRows, documentRows);
    }

    private static async Task<long> HitsAsync(EmbeddingCache.Protocol.V1.EmbeddingCache.EmbeddingCacheClient client) =>
        (long)(await client.ListModelsAsync(new ListModelsRequest())).Models.Single(m => m.Name == Store).Hits;
}
