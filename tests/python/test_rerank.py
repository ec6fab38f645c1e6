"""Client.rerank (BEIR's reranking shape) against a real embcache server: it equals scoring each query's own
candidates with numpy on the vectors Embed gives, in one Score call.

Same environment as test_client.py (EMBCACHE_ADDRESS, EMBCACHE_REPO); run beside it:
    /usr/bin/python3 -m unittest -v test_rerank
"""
import unittest
import uuid

import grpc
import numpy as np

from test_client import ADDRESS, MINILM, ec

from embedding_cache import client as client_module


class _MethodLog(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Records the method of every call the client makes."""

    def __init__(self):
        self.methods = []

    def intercept_unary_unary(self, continuation, details, request):
        self.methods.append(details.method)
        return continuation(details, request)

    def intercept_stream_stream(self, continuation, details, requests):
        self.methods.append(details.method)
        return continuation(details, requests)


def _logged_client():
    """A Client whose channel goes through a _MethodLog, and the log."""
    log = _MethodLog()
    plain = client_module.grpc.insecure_channel
    client_module.grpc.insecure_channel = lambda *args, **kwargs: grpc.intercept_channel(plain(*args, **kwargs), log)
    try:
        return ec.Client(ADDRESS, timeout=300), log
    finally:
        client_module.grpc.insecure_channel = plain


def _cosine(query, documents):
    return (documents @ query) / (np.linalg.norm(documents, axis=1) * np.linalg.norm(query))


class RerankTests(unittest.TestCase):
    def setUp(self):
        self.client, self.log = _logged_client()
        self.prefix = uuid.uuid4().hex[:8]

    def tearDown(self):
        self.client.close()

    def doc(self, n):
        return f"{self.prefix}-d{n}"

    def test_rerank_equals_per_query_numpy_scoring_in_one_score_call(self):
        documents = {self.doc(n): {"title": f"Title {n}", "text": f" passage number {n} about topic {n % 3} "} for n in range(8)}
        joined = [(d["title"] + " " + d["text"]).strip() for d in documents.values()]
        queries = {"q1": "what is topic 1?", "q2": "tell me about topic 2", "q3": "number five"}
        # Overlapping candidate lists; q1 has more than top_k, so only its 4 best first-stage ones are reranked.
        results = {
            "q1": {self.doc(n): float(n) for n in range(7)},
            "q2": {self.doc(1): 0.5, self.doc(2): 0.9, self.doc(7): 0.1},
            "q3": {self.doc(5): 1.0, self.doc(6): 2.0},
        }
        self.client.embed(MINILM, joined, ids=list(documents))
        self.log.methods.clear()

        reranked = self.client.rerank(MINILM, queries, results, top_k=4)

        self.assertEqual(self.log.methods, ["/embeddingcache.v1.EmbeddingCache/Score"])
        expected_candidates = {"q1": [self.doc(n) for n in (6, 5, 4, 3)], "q2": [self.doc(n) for n in (2, 1, 7)],
                               "q3": [self.doc(6), self.doc(5)]}
        self.assertEqual({q: sorted(scores) for q, scores in reranked.items()}, {q: sorted(c) for q, c in expected_candidates.items()})
        vector_of = dict(zip(documents, self.client.embed(MINILM, joined)))
        for query_id, candidates in expected_candidates.items():
            query = self.client.embed(MINILM, [queries[query_id]], kind="query")[0]
            expected = _cosine(query, np.stack([vector_of[d] for d in candidates]))
            np.testing.assert_allclose([reranked[query_id][d] for d in candidates], expected, atol=1e-5)
            # Best first by the new score.
            self.assertEqual(list(reranked[query_id]), [candidates[i] for i in np.argsort(-expected, kind="stable")])

    def test_rerank_computes_candidates_from_the_corpus_joined_as_beir_joins_them(self):
        corpus = {self.doc(0): {"title": "Dense retrieval", "text": "embeds queries and passages."},
                  self.doc(1): {"text": "  BM25 counts terms.  "}}
        reranked = self.client.rerank(MINILM, {"q": "what is dense retrieval?"},
                                      {"q": {self.doc(0): 1.0, self.doc(1): 2.0}}, corpus=corpus)

        query = self.client.embed(MINILM, ["what is dense retrieval?"], kind="query")[0]
        expected = self.client.embed(MINILM, ["Dense retrieval embeds queries and passages.", "BM25 counts terms."])
        np.testing.assert_allclose([reranked["q"][self.doc(0)], reranked["q"][self.doc(1)]], _cosine(query, expected), atol=1e-5)
        # Stored under their ids: the next run needs no corpus.
        self.assertTrue(self.client.get(MINILM, ids=[self.doc(0), self.doc(1)]).found.all())

    def test_ids_that_are_not_strings_are_refused_before_any_call(self):
        with self.assertRaises(TypeError):
            self.client.rerank(MINILM, {"q": "anything"}, {"q": {7: 1.0}})
        with self.assertRaises(ValueError):
            self.client.rerank(MINILM, {}, {"q": {self.doc(0): 1.0}})
        self.assertEqual(self.log.methods, [])

    def test_a_candidate_neither_cached_nor_in_the_corpus_is_named_not_scored(self):
        self.client.embed(MINILM, ["a cached passage"], ids=[self.doc(0)])
        with self.assertRaises(ec.FailedPreconditionError) as caught:
            self.client.rerank(MINILM, {"q": "anything"}, {"q": {self.doc(0): 1.0, self.doc(9): 0.5}},
                               corpus={self.doc(0): {"text": "a cached passage"}})
        self.assertIn(repr(self.doc(9)), caught.exception.details)
        self.assertNotIn(repr(self.doc(0)), caught.exception.details)


if __name__ == "__main__":
    unittest.main()
