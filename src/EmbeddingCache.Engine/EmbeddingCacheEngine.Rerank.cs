using System.Runtime.InteropServices;
using EmbeddingCache.Inference;
using EmbeddingCache.Storage;

namespace EmbeddingCache.Engine;

public sealed partial class EmbeddingCacheEngine
{
    /// <summary>Candidates copied side by side for one scoring call: bounds the scratch memory of a query with many candidates.</summary>
    private const int CandidatesPerScoringCall = 4096;

    /// <summary>
    /// Each query against its own candidates (BEIR's reranking shape). Every distinct document is looked up once, by
    /// id, however many queries list it; an id that is not cached is computed from its text when it has one (and
    /// stored under the id), and otherwise scores NaN as <see cref="RowSource.Missing"/>: reported, never scored
    /// as a zero vector.
    /// </summary>
    public async Task<RerankResult> RerankAsync(RerankCommand command, CancellationToken cancellationToken)
    {
        ThrowIfStopping();
        long pairs = RequestValidation.Rerank(command, options);
        var documents = DistinctDocuments.Of(command.Candidates);
        RequestValidation.RowLimit(documents.Ids.Count, "candidates (distinct document ids)", options);

        using var queries = await EmbedAsync(
            new EmbedCommand(command.Model, VectorKind.Query, command.Queries, [], VectorDType.Float32, CacheOnly: false),
            cancellationToken, sentAsReply: false).ConfigureAwait(false);
        using var found = await GetAsync(
            new GetCommand(command.Model, VectorKind.Document, documents.Ids, [], VectorDType.Float32),
            cancellationToken, sentAsReply: false).ConfigureAwait(false);
        var sources = found.Sources;
        var computable = Enumerable.Range(0, sources.Length)
            .Where(d => sources[d] == RowSource.Missing && documents.Texts[d] is not null).ToArray();
        if (computable.Length > 0)
        {
            using var computed = await EmbedAsync(
                new EmbedCommand(command.Model, VectorKind.Document, computable.Select(d => documents.Texts[d]!).ToArray(),
                    computable.Select(d => documents.Ids[d]).ToArray(), VectorDType.Float32, CacheOnly: false),
                cancellationToken, sentAsReply: false).ConfigureAwait(false);
            int rowBytes = found.Vectors.Dims * sizeof(float);
            for (int j = 0; j < computable.Length; j++)
            {
                computed.Vectors.Data.Span.Slice(j * rowBytes, rowBytes).CopyTo(found.Vectors.Data.Span.Slice(computable[j] * rowBytes, rowBytes));
                sources[computable[j]] = computed.Sources[j];
            }
        }
        return ScoreCandidates(command, SimilarityOf(command.Model), checked((int)pairs), documents.RowOfPair, queries, found.Vectors, sources);
    }

    private static RerankResult ScoreCandidates(
        RerankCommand command, SimilarityFunction similarity, int pairs, int[] rowOfPair, LookupResult queries, PackedVectors documents, RowSource[] documentSources)
    {
        int dims = queries.Vectors.Dims;
        var queryRows = MemoryMarshal.Cast<byte, float>(queries.Vectors.Data.Span);
        var documentRows = MemoryMarshal.Cast<byte, float>(documents.Data.Span);
        var scores = new float[pairs];
        var pairSources = new RowSource[pairs];
        var counts = new int[command.Candidates.Count];
        var top = new List<(int Index, float Score)[]>();
        var side = new float[Math.Min(CandidatesPerScoringCall, pairs) * dims];
        int pair = 0;
        for (int q = 0; q < counts.Length; q++)
        {
            int count = counts[q] = command.Candidates[q].Ids.Count;
            var query = queryRows.Slice(q * dims, dims);
            for (int start = 0; start < count; start += CandidatesPerScoringCall)
            {
                int chunk = Math.Min(CandidatesPerScoringCall, count - start);
                for (int c = 0; c < chunk; c++)
                {
                    int row = rowOfPair[pair + start + c];
                    documentRows.Slice(row * dims, dims).CopyTo(side.AsSpan(c * dims, dims));
                    pairSources[pair + start + c] = documentSources[row];
                }
                SimilarityScorer.Matrix(query, side.AsSpan(0, chunk * dims), dims, similarity).CopyTo(scores.AsSpan(pair + start, chunk));
            }
            for (int c = pair; c < pair + count; c++)
            {
                if (pairSources[c] == RowSource.Missing) scores[c] = float.NaN;
            }
            // One entry per query, even an empty one, so that top[i] is query i's.
            if (command.TopK > 0) top.Add(SimilarityScorer.Top(scores.AsSpan(pair, count), command.TopK));
            pair += count;
        }
        return new RerankResult(scores, counts, pairSources, queries.Sources, top);
    }

    /// <summary>The distinct document ids of the candidate lists (with the first text given for each) and, per pair, its document's row.</summary>
    private sealed record DistinctDocuments(List<string> Ids, List<string?> Texts, int[] RowOfPair)
    {
        public static DistinctDocuments Of(IReadOnlyList<QueryCandidates> candidates)
        {
            var rowOf = new Dictionary<string, int>(StringComparer.Ordinal);
            var ids = new List<string>();
            var texts = new List<string?>();
            var rowOfPair = new int[candidates.Sum(c => c.Ids.Count)];
            int pair = 0;
            foreach (var list in candidates)
            {
                for (int c = 0; c < list.Ids.Count; c++, pair++)
                {
                    string? text = list.Texts.Count != 0 ? list.Texts[c] : null;
                    if (!rowOf.TryGetValue(list.Ids[c], out int row))
                    {
                        rowOf.Add(list.Ids[c], row = ids.Count);
                        ids.Add(list.Ids[c]);
                        texts.Add(text);
                    }
                    else if (texts[row] is null)
                    {
                        texts[row] = text;
                    }
                    rowOfPair[pair] = row;
                }
            }
            return new DistinctDocuments(ids, texts, rowOfPair);
        }
    }
}
