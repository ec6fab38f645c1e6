"""The Python client (src/python/embedding_cache) against a real embcache server, as a notebook uses it.

Environment:
  EMBCACHE_ADDRESS    the server, e.g. 127.0.0.1:50051 (an http:// prefix is fine)
  EMBCACHE_ARTIFACTS  the server's artifacts directory, for open_cache
  EMBCACHE_PROTOC     protoc, for the descriptor check (default: Grpc.Tools in the NuGet cache; skipped if none)
  EMBCACHE_REPO       the repository root (default: found by walking up to EmbeddingCache.sln)
The package is imported from the source tree: put src/python on PYTHONPATH (done below when found).

    /usr/bin/python3 -m unittest -v test_client
"""
import os
import subprocess
import sys
import tempfile
import unittest
import uuid

import numpy as np


def _find_repo():
    explicit = os.environ.get("EMBCACHE_REPO")
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    while True:
        if os.path.exists(os.path.join(here, "EmbeddingCache.sln")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


REPO = _find_repo()
if REPO and os.path.join(REPO, "src", "python") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "src", "python"))

import embedding_cache as ec  # noqa: E402

ADDRESS = os.environ.get("EMBCACHE_ADDRESS", "127.0.0.1:50051")
ARTIFACTS = os.environ.get("EMBCACHE_ARTIFACTS")
MINILM = "all-MiniLM-L6-v2"
ARCTIC = "snowflake-arctic-embed-xs"
ARCTIC_QUERY_PREFIX = "Represent this sentence for searching relevant passages: "

client = None


def setUpModule():
    global client
    client = ec.Client(ADDRESS, timeout=300)


def tearDownModule():
    client.close()


def unique(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def texts(n, tag=None):
    tag = tag or unique()
    words = ["dense", "retrieval", "café", "東京", "😀", "naïve", "rerank", "corpus"]
    return [f"passage {tag} {i}: " + " ".join(words[(i + j) % len(words)] for j in range(3 + i % 5)) for i in range(n)]


def random_rows(n, dims, seed, dtype="float32"):
    rows = np.random.default_rng(seed).uniform(-1, 1, size=(n, dims)).astype(dtype)
    rows[:, 0] = 1 + np.arange(n) % 7  # no zero row
    return rows


def require_artifacts(test):
    if not ARTIFACTS:
        test.skipTest("EMBCACHE_ARTIFACTS is not set")


class EmbedTests(unittest.TestCase):
    def test_embed_computes_then_serves_identical_bytes_from_cache(self):
        batch = texts(6)
        first = client.embed_with_sources(MINILM, batch)
        self.assertEqual(first.vectors.shape, (6, 384))
        self.assertEqual(first.vectors.dtype, np.dtype("<f4"))
        self.assertEqual(list(first.sources), ["computed"] * 6)
        self.assertEqual((first.computed_count, first.cached_count, first.missing_count), (6, 0, 0))
        self.assertTrue(first.fingerprint)
        self.assertGreater(first.timings["inference"], 0)
        self.assertTrue({"lookup", "tokenize", "queue", "inference", "write"} <= set(first.timings))
        np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1, atol=1e-4)

        second = client.embed_with_sources(MINILM, batch)
        self.assertEqual(list(second.sources), ["cached"] * 6)
        self.assertEqual(second.fingerprint, first.fingerprint)
        self.assertEqual(second.vectors.tobytes(), first.vectors.tobytes())
        self.assertEqual(client.embed(MINILM, batch).tobytes(), first.vectors.tobytes())

    def test_mixed_and_repeated_texts_come_back_in_input_order(self):
        cached, fresh = texts(3), texts(2)
        warm = client.embed(MINILM, cached, kind="query")
        mixed = [fresh[0], cached[1], fresh[0], fresh[1], cached[1], cached[0], fresh[1]]
        result = client.embed_with_sources(MINILM, mixed, kind="query")
        self.assertEqual(list(result.sources), ["computed", "cached", "computed", "computed", "cached", "cached", "computed"])
        v = result.vectors
        self.assertEqual(v[1].tobytes(), warm[1].tobytes())
        self.assertEqual(v[5].tobytes(), warm[0].tobytes())
        self.assertEqual(v[0].tobytes(), v[2].tobytes())
        self.assertEqual(v[3].tobytes(), v[6].tobytes())
        self.assertNotEqual(v[0].tobytes(), v[3].tobytes())
        # the same text as a document is a different cache entry
        self.assertEqual(client.embed_with_sources(MINILM, [cached[0]], kind="document").computed_count, 1)

    def test_float16_is_the_float32_vector_rounded(self):
        batch = texts(4)
        f32 = client.embed(MINILM, batch)
        f16 = client.embed_with_sources(MINILM, batch, dtype="float16")
        self.assertEqual(f16.vectors.dtype, np.dtype("<f2"))
        self.assertEqual(list(f16.sources), ["cached"] * 4)
        np.testing.assert_allclose(f16.vectors.astype(np.float32), f32, atol=1e-3)
        self.assertEqual(client.embed(MINILM, batch, dtype=np.float16).tobytes(), f16.vectors.tobytes())

    def test_cache_only_returns_missing_rows_as_zeros(self):
        known, unknown = texts(1), texts(1)
        client.embed(MINILM, known)
        result = client.embed_with_sources(MINILM, [unknown[0], known[0]], cache_only=True)
        self.assertEqual(list(result.sources), ["missing", "cached"])
        self.assertFalse(result.vectors[0].any())
        self.assertEqual(client.get(MINILM, texts=unknown).found.tolist(), [False])

    def test_a_single_string_is_one_row(self):
        self.assertEqual(client.embed(MINILM, texts(1)[0]).shape, (1, 384))


class StoreTests(unittest.TestCase):
    def test_get_by_ids_marks_missing_rows_and_zero_fills_them(self):
        ids = [unique("doc") for _ in range(3)]
        vectors = client.embed(MINILM, texts(3), ids=ids)
        result = client.get(MINILM, ids=[ids[2], "no-such-id", ids[0]])
        self.assertEqual(result.found.tolist(), [True, False, True])
        self.assertEqual((result.found_count, result.missing_count), (2, 1))
        self.assertEqual(result.vectors[0].tobytes(), vectors[2].tobytes())
        self.assertEqual(result.vectors[2].tobytes(), vectors[0].tobytes())
        self.assertFalse(result.vectors[1].any())

    def test_put_then_get_round_trips_float32_bytes(self):
        model, ids = unique("py-put32"), [unique("id") for _ in range(5)]
        rows = random_rows(5, 8, seed=1)
        self.assertEqual(client.put(model, rows, ids=ids), 5)
        got = client.get(model, ids=ids)
        self.assertTrue(got.found.all())
        self.assertEqual(got.vectors.tobytes(), rows.tobytes())
        by_text = ["a text", "another text"]
        self.assertEqual(client.put(model, rows[:2], texts=by_text, kind="query"), 2)
        self.assertEqual(client.get(model, texts=by_text, kind="query").vectors.tobytes(), rows[:2].tobytes())
        self.assertFalse(client.get(model, texts=by_text, kind="document").found.any())

    def test_put_float16_round_trips_in_float16_and_widens_exactly(self):
        model, ids = unique("py-put16"), [unique("id") for _ in range(4)]
        rows = random_rows(4, 16, seed=2, dtype="float16")
        self.assertEqual(client.put(model, rows, ids=ids), 4)
        self.assertEqual(client.get(model, ids=ids, dtype="float16").vectors.tobytes(), rows.tobytes())
        self.assertEqual(client.get(model, ids=ids).vectors.tobytes(), rows.astype(np.float32).tobytes())

    def test_put_accepts_non_contiguous_and_float64_arrays(self):
        model, ids = unique("py-put64"), [unique("id") for _ in range(3)]
        rows = random_rows(3, 12, seed=3, dtype="float64")[:, ::2]
        client.put(model, rows, ids=ids)
        self.assertEqual(client.get(model, ids=ids).vectors.tobytes(), rows.astype("<f4").tobytes())

    def test_newest_write_for_an_id_wins_over_grpc_and_in_the_files(self):
        model, ident = unique("py-newest"), unique("id")
        old, new = random_rows(1, 4, seed=4), random_rows(1, 4, seed=5) * 2
        client.put(model, old, ids=[ident])
        client.put(model, new, ids=[ident])
        self.assertEqual(client.get(model, ids=[ident]).vectors.tobytes(), new.tobytes())
        if ARTIFACTS:
            files = ec.open_cache(ARTIFACTS, model)
            self.assertEqual(len(files), 2)
            vectors, found = files.get([ident])
            self.assertEqual(vectors.tobytes(), new.tobytes())

    def test_ten_thousand_rows_in_one_get(self):
        model, n = unique("py-big"), 10_000
        ids = [f"doc-{i}" for i in range(n)]
        rows = random_rows(n, 384, seed=6)
        self.assertEqual(client.put(model, rows, ids=ids), n)
        got = client.get(model, ids=ids)
        self.assertEqual(got.vectors.shape, (n, 384))
        self.assertTrue(got.found.all())
        self.assertEqual(got.vectors.tobytes(), rows.tobytes())

    def test_invalidate_drops_a_kind_or_the_whole_model(self):
        model = unique("py-inval")
        client.put(model, random_rows(3, 4, seed=7), ids=["a", "b", "c"])
        client.put(model, random_rows(2, 4, seed=8), ids=["q1", "q2"], kind="query")
        removed = client.invalidate(model, kind="query")
        self.assertEqual(removed.rows_removed, 2)
        self.assertGreater(removed.bytes_removed, 0)
        self.assertFalse(client.get(model, ids=["q1"], kind="query").found.any())
        self.assertTrue(client.get(model, ids=["a"]).found.all())
        rows_removed, bytes_removed = client.invalidate(model)
        self.assertEqual(rows_removed, 3)
        self.assertFalse(client.get(model, ids=["a", "b", "c"]).found.any())
        if ARTIFACTS:  # an invalidated cache opens empty, still knowing its dims
            files = ec.open_cache(ARTIFACTS, model)
            self.assertEqual(len(files), 0)
            self.assertEqual(files.vectors.shape, (0, 4))
            vectors, found = files.get(["a"])
            self.assertEqual((vectors.shape, found.tolist()), ((1, 4), [False]))
            self.assertEqual(np.asarray(files.vectors).shape, (0, 4))


class StreamAndScoreTests(unittest.TestCase):
    def test_embed_many_streams_a_corpus_in_order_and_matches_embed(self):
        corpus = texts(70)
        streamed = client.embed_many(MINILM, corpus, batch_size=16)
        self.assertEqual(streamed.shape, (70, 384))
        again = client.embed_with_sources(MINILM, corpus)
        self.assertTrue((again.sources == "cached").all())
        np.testing.assert_array_equal(again.vectors, streamed)

    def test_score_equals_numpys_cosine_on_the_same_vectors(self):
        queries = texts(3)
        doc_ids = [unique("doc") for _ in range(12)]
        documents = np.random.default_rng(5).standard_normal((12, 384)).astype(np.float32)
        client.put(MINILM, documents, ids=doc_ids)
        result = client.score(MINILM, queries, document_ids=doc_ids, top_k=4)

        query_vectors = client.embed(MINILM, queries, kind="query")
        q = query_vectors / np.linalg.norm(query_vectors, axis=1, keepdims=True)
        d = documents / np.linalg.norm(documents, axis=1, keepdims=True)
        expected = q @ d.T
        self.assertEqual(result.scores.shape, (3, 12))
        np.testing.assert_allclose(result.scores, expected, atol=1e-5)
        for row, top in zip(expected, result.top):
            self.assertEqual([index for index, _ in top], list(np.argsort(-row, kind="stable")[:4]))
        self.assertTrue((result.document_sources == "cached").all())

    def test_score_by_texts_computes_missing_documents(self):
        docs = texts(5)
        result = client.score(MINILM, ["what is dense retrieval?"], document_texts=docs)
        self.assertTrue((result.document_sources == "computed").all())
        expected = client.embed(MINILM, ["what is dense retrieval?"], kind="query") @ client.embed(MINILM, docs).T
        np.testing.assert_allclose(result.scores, expected, atol=1e-5)

    def test_score_of_uncached_ids_says_which(self):
        with self.assertRaises(ec.FailedPreconditionError) as caught:
            client.score(MINILM, ["q"], document_ids=["never-put-" + unique()])
        self.assertIn("not cached", caught.exception.details)


class ModelTests(unittest.TestCase):
    def test_models_lists_the_built_in_model(self):
        models = {m.name: m for m in client.models()}
        minilm = models[MINILM]
        self.assertEqual(minilm.dims, 384)
        self.assertTrue(minilm.can_compute)
        self.assertTrue(minilm.fingerprint)
        self.assertIsNone(minilm.error)
        # How its vectors are made, as the server read the folder.
        self.assertEqual((minilm.pooling, minilm.max_tokens, minilm.similarity, minilm.normalize), ("mean", 256, "cosine", True))
        self.assertEqual((minilm.query_prefix, minilm.document_prefix, minilm.dense), ("", "", ()))
        self.assertEqual(minilm.onnx_file, "model.onnx")

    def test_stats_count_hits(self):
        batch = texts(2)
        client.embed(MINILM, batch)
        before = client.stats(MINILM)
        client.embed(MINILM, batch)
        after = client.stats()[MINILM]
        self.assertEqual(after.hits - before.hits, 2)
        self.assertTrue(0 < after.hit_rate <= 1)
        with self.assertRaises(ec.ModelNotFoundError):
            client.stats("no-such-model")


class ErrorTests(unittest.TestCase):
    def test_unknown_model_is_not_found_with_the_servers_message(self):
        with self.assertRaises(ec.EmbeddingCacheError) as caught:
            client.embed("no-such-model", ["text"])
        error = caught.exception
        self.assertIsInstance(error, ec.ModelNotFoundError)
        self.assertEqual(error.code, "NOT_FOUND")
        self.assertIn("no-such-model", error.details)
        self.assertIn(error.details, str(error))

    def test_nan_in_put_is_invalid_argument(self):
        rows = random_rows(2, 4, seed=9)
        rows[1, 2] = np.nan
        with self.assertRaises(ec.InvalidArgumentError) as caught:
            client.put(unique("py-nan"), rows, ids=["a", "b"])
        self.assertEqual(caught.exception.code, "INVALID_ARGUMENT")
        self.assertTrue(caught.exception.details)

    def test_ids_and_texts_of_different_lengths_are_invalid(self):
        with self.assertRaises(ec.InvalidArgumentError):
            client.embed(MINILM, ["one", "two"], ids=["only-one"])

    def test_client_side_mistakes_raise_before_calling(self):
        with self.assertRaises(ValueError):
            client.embed(MINILM, ["x"], kind="passages")
        with self.assertRaises(ValueError):
            client.get(MINILM, ids=["a"], texts=["b"])
        with self.assertRaises(ValueError):
            client.put("m", np.zeros(4, np.float32), ids=["a"])

    def test_an_unreachable_server_is_unavailable(self):
        with ec.Client("127.0.0.1:1", timeout=5) as dead:
            with self.assertRaises(ec.UnavailableError) as caught:
                dead.models()
        self.assertEqual(caught.exception.code, "UNAVAILABLE")


class OpenCacheTests(unittest.TestCase):
    def setUp(self):
        require_artifacts(self)

    def test_files_hold_what_get_returns_by_ids_and_by_texts(self):
        ids = [unique("doc") for _ in range(5)]
        batch = texts(5)
        embedded = client.embed(MINILM, batch, ids=ids)
        files = ec.open_cache(ARTIFACTS, MINILM, kind="document")
        self.assertEqual(len(files.ids), len(files.vectors))
        self.assertEqual(len(files.keys), len(files.vectors))
        self.assertEqual(files.vectors.shape[1], 384)
        self.assertFalse(files.vectors._segments[0].flags.writeable)  # a read-only ndarray over the mapping

        by_ids, found = files.get(ids + ["no-such-id"])
        self.assertEqual(found.tolist(), [True] * 5 + [False])
        self.assertEqual(by_ids[:5].tobytes(), client.get(MINILM, ids=ids).vectors.tobytes())
        self.assertEqual(by_ids[:5].tobytes(), embedded.tobytes())
        by_texts, found = files.lookup_texts(batch)
        self.assertTrue(found.all())
        self.assertEqual(by_texts.tobytes(), client.get(MINILM, texts=batch).vectors.tobytes())
        for one in range(5):  # a request of one key takes its own path
            self.assertEqual(files.get(ids[one])[0].tobytes(), embedded[one].tobytes())
            self.assertEqual(files.lookup_texts(batch[one])[0].tobytes(), embedded[one].tobytes())
        for missing in (files.get("no-such-id"), files.lookup_texts("no such text")):
            self.assertEqual((missing[0].shape, missing[0].any(), missing[1].tolist()), ((1, 384), False, [False]))

        rows = files.rows_of(ids=ids)
        self.assertEqual([files.ids[r] for r in rows], ids)
        self.assertEqual([files.keys[r] for r in rows], [ec.content_key(t) for t in batch])
        self.assertEqual(files.vectors[rows].tobytes(), embedded.tobytes())
        self.assertEqual(files.vectors[int(rows[0])].tobytes(), embedded[0].tobytes())
        everything = np.asarray(files.vectors)
        self.assertEqual(everything.shape, files.vectors.shape)
        self.assertEqual(everything[rows].tobytes(), embedded.tobytes())
        self.assertEqual(files.vectors[-1].tobytes(), everything[-1].tobytes())
        self.assertEqual(files.vectors[1::2].tobytes(), everything[1::2].tobytes())
        self.assertEqual(files.vectors[rows, :3].tobytes(), everything[rows, :3].tobytes())

    def test_files_of_many_segments_match_get(self):
        model, n = unique("py-files"), 300
        ids = [f"id-{i}" for i in range(n)]
        rows = random_rows(n, 8, seed=10)
        for start in range(0, n, 50):  # several writes; segments seal at the server's SegmentRows
            client.put(model, rows[start:start + 50], ids=ids[start:start + 50])
        files = ec.open_cache(ARTIFACTS, model)
        self.assertEqual(files.ids, ids)
        self.assertEqual(files.keys, [None] * n)
        self.assertEqual(np.asarray(files.vectors).tobytes(), rows.tobytes())
        picked = np.array([299, 0, 151, 150, 149, 42])
        self.assertEqual(files.vectors[picked].tobytes(), rows[picked].tobytes())
        mask = np.zeros(n, bool)
        mask[::7] = True
        self.assertEqual(files.vectors[mask].tobytes(), rows[mask].tobytes())
        self.assertEqual(files.vectors[10:260].tobytes(), rows[10:260].tobytes())
        self.assertEqual(files.get(ids)[0].tobytes(), client.get(model, ids=ids).vectors.tobytes())

    def test_one_id_and_many_ids_with_repeats_and_misses_answer_alike(self):
        model, n = unique("py-lookup"), 150
        ids = [f"id-{i}" for i in range(n)]
        rows = random_rows(n, 8, seed=12)
        client.put(model, rows, ids=ids)
        client.put(model, rows[:3] * 3, ids=ids[:3])  # newer rows for three ids
        files = ec.open_cache(ARTIFACTS, model)
        wanted = ids[::-1] + ["absent", ids[1], ids[1]] + [f"absent-{i}" for i in range(20)]
        vectors, found = files.get(wanted)
        expected = client.get(model, ids=wanted)
        self.assertEqual(found.tolist(), expected.found.tolist())
        self.assertEqual(vectors.tobytes(), expected.vectors.tobytes())
        for ident in (ids[0], ids[77], "absent"):  # one id: the scalar path
            one, one_found = files.get(ident)
            self.assertEqual(one.tobytes(), client.get(model, ids=[ident]).vectors.tobytes())
            self.assertEqual(one_found.tolist(), [ident != "absent"])

    def test_refresh_reads_only_rows_committed_since_and_restarts_after_invalidate(self):
        model, n = unique("py-refresh"), 250
        ids = [f"id-{i}" for i in range(n)]
        rows = random_rows(n, 8, seed=11)
        batch = texts(3)
        client.put(model, rows[:100], ids=ids[:100])
        files = ec.open_cache(ARTIFACTS, model)
        self.assertEqual(len(files), 100)
        self.assertEqual(files.refresh(), 0)
        sealed = files._segments[0]
        sealed_rows, sealed_offset = sealed.rows, sealed.sidecar_offset

        client.put(model, rows[100:], ids=ids[100:])
        client.put(model, rows[:10] * 2, ids=ids[:10])  # the newest row of an id wins after refresh too
        client.put(model, rows[:3], texts=batch)
        self.assertFalse(files.get(ids[200:201])[1].any())  # a snapshot until refreshed
        self.assertEqual(files.refresh(), 150 + 10 + 3)
        self.assertIs(sealed.rows, sealed_rows)  # the sealed segment was not read again
        self.assertEqual(sealed.sidecar_offset, sealed_offset)
        vectors, found = files.get(ids)
        self.assertTrue(found.all())
        self.assertEqual(vectors.tobytes(), client.get(model, ids=ids).vectors.tobytes())
        self.assertEqual(files.lookup_texts(batch)[0].tobytes(), rows[:3].tobytes())
        self.assertEqual(files.get(ids[0])[0].tobytes(), (rows[:1] * 2).tobytes())
        self.assertEqual(files.ids, ec.open_cache(ARTIFACTS, model).ids)

        client.invalidate(model)
        client.put(model, rows[:5], ids=ids[:5])
        files.refresh()
        self.assertEqual(files.ids, ids[:5])
        self.assertEqual(files.get(ids[:6])[1].tolist(), [True] * 5 + [False])
        self.assertFalse(files.lookup_texts(batch)[1].any())
        self.assertFalse(files.lookup_texts(batch[0])[1].any())
        self.assertEqual(files.get(ids[0])[0].tobytes(), rows[:1].tobytes())

    def test_lookup_texts_applies_the_models_query_prefix(self):
        queries = [f"what is {unique()}?", "dense retrieval"]
        embedded = client.embed(ARCTIC, queries, kind="query")
        files = ec.open_cache(ARTIFACTS, ARCTIC, kind="query")
        self.assertEqual(files.prefix, ARCTIC_QUERY_PREFIX)
        vectors, found = files.lookup_texts(queries)
        self.assertTrue(found.all())
        self.assertEqual(vectors.tobytes(), embedded.tobytes())
        self.assertEqual(files.rows_of(keys=[ec.content_key(q, ARCTIC_QUERY_PREFIX) for q in queries]).min() >= 0, True)
        self.assertFalse(ec.open_cache(ARTIFACTS, ARCTIC, kind="query", prefix="").lookup_texts(queries)[1].any())

    def test_a_model_with_nothing_cached_opens_empty_and_an_unknown_one_fails(self):
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(os.path.join(root, "models", "fresh"))
            files = ec.open_cache(root, "fresh", kind="query")
            self.assertEqual((len(files), files.ids, files.vectors.shape), (0, [], (0, 0)))
            self.assertEqual(files.get(["a"])[1].tolist(), [False])
        with self.assertRaises(FileNotFoundError):
            ec.open_cache(ARTIFACTS, "no-such-model")


class RowIndexTests(unittest.TestCase):
    """open_cache's id and key indexes without a server, against a dict: keys outside their home bucket, keys
    that share a fingerprint, ids that bytes cannot tell apart, misses, later rows winning."""

    def assert_like_a_dict(self, index, request, stored, wanted):
        newest = {}
        for row, key in enumerate(stored):
            if key is not None:
                newest[key] = row
        rows, found, every = index.rows(request(wanted))
        expected = [newest.get(key, -1) for key in wanted]
        self.assertEqual(rows.tolist(), expected)
        self.assertEqual(found.tolist(), [row >= 0 for row in expected])
        self.assertEqual(every, all(row >= 0 for row in expected))
        self.assertEqual([index.row(key) for key in wanted], expected)  # the path of a request of one key

    def test_ids_are_found_through_shared_fingerprints_and_full_buckets_and_only_as_themselves(self):
        from embedding_cache import files

        def sharing(mask):
            class SharedFingerprints(files._IdRequest):
                __slots__ = ()

                def __init__(self, ids):
                    super().__init__(ids)
                    self.fingerprints = self.fingerprints & mask

            return SharedFingerprints, staticmethod(lambda ident: files._id_fingerprint(ident) & mask)

        # Homes are the top bits of the 63: 1,024 fingerprints for 6,000 ids: full buckets and several matches a
        # bucket; 4,096: many an absent id matches one stored id; two bits less: 1,024 home buckets of the final
        # 4,096, unique fingerprints.
        unshared = (files._IdRequest, staticmethod(files._id_fingerprint))
        variants = ((unshared, False), (sharing(0x3FF << 53), True), (sharing(0xFFF << 51), False), (sharing(~(0x3 << 61)), True))
        for (request, fingerprint), overflows in variants:
            with self.subTest(request=request.__name__, overflows=overflows):
                stored = [f"doc-{i}" for i in range(4000)]
                index = type("Index", (files._IdIndex,), {"_request": request, "_fingerprint": fingerprint})(stored)
                index.update(list(stored), 0)
                later = [f"doc-{i}" for i in range(3000, 6000)] + [None, "doc-7"]  # newer rows for 1,000 ids; the table grows
                stored.extend(later)
                index.update(later, 4000)
                absent = [f"absent-{i}" for i in range(600)] + ["doc-", "doc-00", ""]
                wanted = stored[:6000:3] + absent + stored[::-7] + ["doc-7"] * 3
                self.assert_like_a_dict(index, request, stored, wanted)
                self.assert_like_a_dict(index, request, stored, absent)
                self.assert_like_a_dict(index, request, stored, ["doc-5999"])
                self.assert_like_a_dict(index, request, stored, ["absent"])
                self.assert_like_a_dict(index, request, stored, [])
                if overflows:
                    used = index._table[..., 0] != files._EMPTY
                    homes = index._homes(index._table[..., 0])
                    self.assertTrue((homes[used] != np.nonzero(used)[0]).any(), "some ids lie outside their home bucket")

    def test_ids_that_bytes_cannot_tell_apart_are_compared_as_strings(self):
        from embedding_cache import files

        class LastCharacter(files._IdRequest):
            """Fingerprints shared by the ids each case must tell apart."""
            __slots__ = ()

            def __init__(self, ids):
                super().__init__(ids)
                self.fingerprints = np.array([self.of(i) for i in ids], np.int64)

            @staticmethod
            def of(ident):
                return ord(ident.rstrip("\0")[-1:] or "\0")

        cases = {
            "ids of several lengths whose bytes split evenly": (["a", "cd", "ef"], ["a", "bcd", "ef"]),
            "a NUL, which numpy's bytes drop": (["a", "b\0", "\0"], ["a\0", "b", "a", "b\0", "", "\0"]),
            "ids too long to copy": (["x" * 300, "x" * 299, "y"], ["x" * 300, "x" * 301, "x" * 299, "y" * 300]),
            "not ASCII, empty, not encodable": (["café", "東京", "naïve", "😀", ""], ["cafe", "café", "東京", "", "\ud800", "😀"]),
            "newest row, rows without an id": (["dup", None, "dup", "a"], ["dup", "a", "dup"]),
        }
        for case, (stored, wanted) in cases.items():
            for request in (files._IdRequest, LastCharacter):
                with self.subTest(case=case, request=request.__name__):
                    fingerprint = staticmethod(getattr(request, "of", files._id_fingerprint))
                    index = type("Index", (files._IdIndex,), {"_request": request, "_fingerprint": fingerprint})(list(stored))
                    index.update(stored, 0)
                    self.assert_like_a_dict(index, request, stored, wanted)
                    for one in wanted:
                        self.assert_like_a_dict(index, request, stored, [one] * 3)  # one length: the joined fast path
        index = files._IdIndex(["a"])
        index.update(["a"], 0)
        for not_strings in ([1, 2], ["a", 2], [b"a"]):
            with self.assertRaises(TypeError):
                index.rows(files._IdRequest(not_strings))

    def test_id_fingerprints_of_a_request_are_those_of_each_id_whatever_their_lengths(self):
        from embedding_cache import files

        requests = {
            "one length, every tail of the last word": [[f"{i:0{n}d}" for i in range(40)] for n in range(1, 18)],
            "one length at the limit and past it": [["x" * 127, "y" * 127], ["x" * 128, "y" * 128], ["x" * 129, "y" * 129]],
            "several lengths, long ids": [["a", "bb", "ccc" * 50, ""], ["x" * 300, "x" * 299, "x" * 300 + "z"]],
            "a NUL, not ASCII, not encodable": [["a\0", "a", "\0"], ["café", "東京", "😀"], ["\ud800", "ok"]],
            "none": [[]],
        }
        for case, batches in requests.items():
            for ids in batches:
                with self.subTest(case=case, ids=ids[:3]):
                    prints = files._IdRequest(ids).fingerprints
                    self.assertEqual(prints.tolist(), [files._id_fingerprint(i) for i in ids])
                    self.assertTrue((prints >= 0).all())
        spread = files._IdRequest([f"doc-{i:07d}" for i in range(4096)]).fingerprints >> 53  # 1,024 homes
        self.assertGreater(len(np.unique(spread)), 900, "ids that differ in their last bytes spread over the buckets")

    def test_content_keys_are_found_through_shared_fingerprints_including_the_free_slot_pattern(self):
        from embedding_cache import files

        class SharedFingerprints(files._KeyRequest):
            __slots__ = ()

            def __init__(self, words):
                super().__init__(words)
                self.fingerprints = self.fingerprints & 0x3E

        rng = np.random.default_rng(7)
        stored = [bytes(k) for k in rng.integers(0, 256, (3000, 16), np.uint8)]
        stored[5] = b"\xff" * 16  # a key that reads like a free slot
        stored[6] = stored[7][:8] + bytes(8)  # two keys with the same first word
        stored[100] = None
        stored.append(stored[10])  # a newer row for a key
        for request in (files._KeyRequest, SharedFingerprints):
            with self.subTest(request=request.__name__):
                shared = request is SharedFingerprints
                index = type("Index", (files._KeyIndex,), {
                    "_request": lambda self, keys: request(files._key_words(keys)),
                    "_fingerprint": staticmethod(lambda key: files._KeyIndex._fingerprint(key) & (0x3E if shared else -1)),
                })(stored)
                index.update(stored[:2000], 0)
                index.update(stored[2000:], 2000)
                absent = [bytes(16), stored[7][:8] + b"\1" * 8, b"\xff" * 15 + b"\xfe"]
                wanted = stored[:100] + stored[101::9] + absent + [stored[5], stored[6]]
                self.assert_like_a_dict(index, lambda keys: request(files._key_words(keys)), stored, wanted)
                self.assert_like_a_dict(index, lambda keys: request(files._key_words(keys)), stored, [b"\xff" * 16])


class LazyVectorsTests(unittest.TestCase):
    """The gather over many segments without a server: each row's offset in the span, kept or rebuilt as refreshes
    append rows, map segments anew or move one."""

    def assert_rows(self, vectors, parts):
        everything = np.concatenate(parts)
        picked = np.random.default_rng(3).integers(0, len(everything), 500)
        self.assertEqual(vectors[picked].tobytes(), everything[picked].tobytes())
        self.assertEqual(np.asarray(vectors).tobytes(), everything.tobytes())

    def test_rows_of_every_segment_stay_right_as_segments_grow_appear_and_move(self):
        from embedding_cache import files

        growing = random_rows(100, 8, seed=20)  # pre-sized like the server's growing segment
        sealed = [random_rows(n, 8, seed=21 + n) for n in (7, 64)]
        vectors = files.LazyVectors([growing[:40]], 8, np.float32)
        self.assertIsNone(vectors._span)  # one segment: taken from it directly
        self.assert_rows(vectors, [growing[:40]])
        vectors._set(sealed + [growing[:40]], 8, np.float32)
        self.assert_rows(vectors, sealed + [growing[:40]])
        first = vectors._span
        vectors._set(sealed + [growing[:90]], 8, np.float32)  # rows appended in place: the table is extended
        self.assertEqual(vectors._span.row_offsets[:len(first.row_offsets)].tolist(), first.row_offsets.tolist())
        self.assert_rows(vectors, sealed + [growing[:90]])
        later = random_rows(30, 8, seed=30)
        vectors._set(sealed + [growing[:90], later], 8, np.float32)  # a new segment
        self.assert_rows(vectors, sealed + [growing[:90], later])
        moved = sealed[1].copy()  # an earlier segment mapped anew: every offset is computed again
        vectors._set([sealed[0], moved, growing[:90], later], 8, np.float32)
        self.assert_rows(vectors, [sealed[0], moved, growing[:90], later])


class DescriptorTests(unittest.TestCase):
    """The shipped embedding_cache.desc must describe the current proto: regenerate it and compare."""

    def test_shipped_descriptor_matches_the_proto(self):
        from google.protobuf import descriptor_pb2

        if not REPO:
            self.skipTest("repository not found: set EMBCACHE_REPO")
        sys.path.insert(0, os.path.join(REPO, "src", "python"))
        import generate_descriptor

        protoc = generate_descriptor.find_protoc()
        if not protoc:
            self.skipTest("protoc not found: set EMBCACHE_PROTOC or restore the solution")
        with tempfile.TemporaryDirectory() as tmp:
            fresh_path = os.path.join(tmp, "fresh.desc")
            generate_descriptor.generate(fresh_path, protoc, os.path.join(REPO, "protos"))
            with open(fresh_path, "rb") as f:
                fresh = descriptor_pb2.FileDescriptorSet.FromString(f.read())
        with open(ec._proto.DESCRIPTOR_PATH, "rb") as f:
            shipped = descriptor_pb2.FileDescriptorSet.FromString(f.read())
        self.assertEqual(describe(shipped), describe(fresh),
                         "embedding_cache.desc is out of date: run python3 src/python/generate_descriptor.py")

    def test_every_rpc_of_the_proto_is_loaded(self):
        names = {m.name for m in ec._proto.SERVICE_DESCRIPTOR.methods}
        self.assertTrue({"Embed", "Get", "Put", "Invalidate", "ListModels"} <= names)


def describe(descriptor_set):
    """Names, numbers and types of every message, field, enum and RPC: what the wire depends on."""
    lines = []
    for file in descriptor_set.file:
        lines.append(f"file {file.name} package {file.package} syntax {file.syntax}")

        def messages(prefix, types):
            for m in types:
                lines.append(f"message {prefix}{m.name}")
                for f in m.field:
                    lines.append(f"  field {f.name} = {f.number} type {f.type} label {f.label} {f.type_name} oneof {f.oneof_index if f.HasField('oneof_index') else '-'}")
                enums(f"{prefix}{m.name}.", m.enum_type)
                messages(f"{prefix}{m.name}.", m.nested_type)

        def enums(prefix, types):
            for e in types:
                lines.append(f"enum {prefix}{e.name}")
                lines.extend(f"  value {v.name} = {v.number}" for v in e.value)

        messages("", file.message_type)
        enums("", file.enum_type)
        for s in file.service:
            lines.append(f"service {s.name}")
            lines.extend(f"  rpc {m.name}({'stream ' if m.client_streaming else ''}{m.input_type}) returns "
                         f"({'stream ' if m.server_streaming else ''}{m.output_type})" for m in s.method)
    return "\n".join(lines)


if __name__ == "__main__":
    unittest.main()
