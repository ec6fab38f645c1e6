"""Client.encoder(...) in the shapes of sentence-transformers, BEIR, MTEB, LangChain and LlamaIndex, and the
asyncio client, against a real embcache server started with a small per-request limit.

Environment: as test_client.py, plus
  EMBCACHE_MAX_ROWS   the server's MaxRowsPerRequest (the tests send more rows than that in one encode)

    /usr/bin/python3 -m unittest -v test_adapters
"""
import asyncio
import contextlib
import enum
import importlib.util
import inspect
import io
import os
import sys
import types
import unittest

import numpy as np

import test_client
from test_client import ADDRESS, ARCTIC, MINILM, tearDownModule, texts, unique  # noqa: F401 (tearDownModule: unittest's)

import embedding_cache as ec  # noqa: E402  (test_client puts src/python on the path)

MAX_ROWS = int(os.environ.get("EMBCACHE_MAX_ROWS", "32"))

client = None


def setUpModule():
    global client
    test_client.setUpModule()
    client = test_client.client


class PromptType(enum.Enum):
    """MTEB's mteb.encoder_interface.PromptType, as MTEB passes it to encode."""

    query = "query"
    passage = "passage"


def embedded(model, batch, kind):
    """What Embed gives for ``batch``, fetched within the server's per-request limit."""
    return np.concatenate([client.embed(model, batch[i:i + MAX_ROWS], kind=kind) for i in range(0, len(batch), MAX_ROWS)])


class SentenceTransformersShapeTests(unittest.TestCase):
    def setUp(self):
        self.minilm = client.encoder(MINILM)
        self.arctic = client.encoder(ARCTIC)  # has a query prefix: query and document vectors differ

    def test_encode_gives_embeds_vectors_and_a_1d_array_for_one_string(self):
        batch = texts(5)
        vectors = self.minilm.encode(batch)
        self.assertEqual((vectors.shape, vectors.dtype), ((5, 384), np.dtype("<f4")))
        self.assertEqual(vectors.tobytes(), client.embed(MINILM, batch).tobytes())
        one = self.minilm.encode(batch[2])
        self.assertEqual(one.shape, (384,))
        self.assertEqual(one.tobytes(), vectors[2].tobytes())
        self.assertEqual([v.tobytes() for v in self.minilm.encode(batch, convert_to_numpy=False)], [v.tobytes() for v in vectors])
        self.assertEqual(self.minilm.encode([]).shape, (0, 384))

    def test_more_rows_than_the_servers_request_limit_in_one_encode(self):
        batch = texts(3 * MAX_ROWS + 5)
        with self.assertRaises(ec.EmbeddingCacheError):  # the limit is real: one Embed of them all is refused
            client.embed(MINILM, batch)
        vectors = self.minilm.encode(batch, batch_size=MAX_ROWS)
        self.assertEqual(vectors.shape, (len(batch), 384))
        self.assertEqual(vectors.tobytes(), embedded(MINILM, batch, "document").tobytes())
        self.assertEqual(self.minilm.encode(batch, batch_size=7).tobytes(), vectors.tobytes())

    def test_query_and_document_kinds_by_method_and_prompt_name(self):
        batch = [f"what is {unique()}?", "dense retrieval"]
        query, document = client.embed(ARCTIC, batch, kind="query"), client.embed(ARCTIC, batch, kind="document")
        self.assertFalse(np.array_equal(query, document))
        self.assertEqual(self.arctic.encode_query(batch).tobytes(), query.tobytes())
        self.assertEqual(self.arctic.encode_document(batch).tobytes(), document.tobytes())
        self.assertEqual(self.arctic.encode(batch, prompt_name="query").tobytes(), query.tobytes())
        for name in ("document", "passage", "corpus", None):
            self.assertEqual(self.arctic.encode(batch, prompt_name=name).tobytes(), document.tobytes(), name)
        self.assertEqual(self.arctic.encode_query(batch[0]).tobytes(), query[0].tobytes())

    def test_similarity_dimension_and_normalization(self):
        a, b = self.minilm.encode(texts(3)), self.minilm.encode(texts(4))
        expected = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
        np.testing.assert_allclose(self.minilm.similarity(a, b), expected, atol=1e-6)
        np.testing.assert_allclose(client.encoder(MINILM, similarity_fn_name="dot").similarity(a[0], b), a[:1] @ b.T, atol=1e-6)
        self.assertEqual(self.minilm.get_sentence_embedding_dimension(), 384)
        raw = client.encoder(ec_store_only_model()).encode(["x", "y"], normalize_embeddings=True)
        np.testing.assert_allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-6)

    def test_progress_bar_counts_every_text(self):
        batch = texts(2 * MAX_ROWS)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            vectors = self.minilm.encode(batch, batch_size=MAX_ROWS, show_progress_bar=True)
        self.assertIn(f"{len(batch)}/{len(batch)}", stderr.getvalue())
        self.assertEqual(vectors.tobytes(), embedded(MINILM, batch, "document").tobytes())

    def test_arguments_that_would_change_the_vectors_are_refused(self):
        with self.assertRaises(ValueError):
            self.minilm.encode(["x"], prompt="query: ")
        with self.assertRaises(ValueError):
            self.minilm.encode(["x"], precision="int8")
        with self.assertRaises(ValueError):
            self.minilm.encode(["x"], prompt_name="clustering")
        with self.assertRaises(ValueError):
            self.minilm.encode(["x"], prompt_name="query", prompt_type=PromptType.passage)
        if importlib.util.find_spec("torch") is None:
            with self.assertRaises(ImportError):
                self.minilm.encode(["x"], convert_to_tensor=True)
        else:
            self.assertEqual(self.minilm.encode(["x"], convert_to_tensor=True).numpy().tobytes(), client.embed(MINILM, ["x"]).tobytes())


def ec_store_only_model():
    """A store-only model holding unnormalized vectors for the texts "x" and "y"."""
    model = unique("py-raw")
    client.put(model, np.array([[3, 4, 0], [1, 1, 1]], np.float32), texts=["x", "y"])
    return model


class FrameworkProtocolTests(unittest.TestCase):
    def setUp(self):
        self.arctic = client.encoder(ARCTIC)

    def test_mteb_encode_takes_task_name_and_prompt_type_as_enum_or_string(self):
        batch = [f"mteb {unique()}", "second sentence"]
        query, document = client.embed(ARCTIC, batch, kind="query"), client.embed(ARCTIC, batch, kind="document")
        self.assertEqual(self.arctic.encode(batch, task_name="NFCorpus", prompt_type=PromptType.query).tobytes(), query.tobytes())
        self.assertEqual(self.arctic.encode(batch, task_name="NFCorpus", prompt_type=PromptType.passage).tobytes(), document.tobytes())
        self.assertEqual(self.arctic.encode(batch, task_name="NFCorpus", prompt_type="query").tobytes(), query.tobytes())
        self.assertEqual(self.arctic.encode(batch, task_name="STS12", prompt_type=None, batch_size=1).tobytes(), document.tobytes())
        signature = inspect.signature(self.arctic.encode)
        self.assertEqual(signature.parameters["task_name"].kind, inspect.Parameter.KEYWORD_ONLY)
        self.assertEqual(signature.parameters["prompt_type"].kind, inspect.Parameter.KEYWORD_ONLY)

    def test_beir_encode_corpus_joins_title_and_text_as_sentencebert_does(self):
        tag = unique()
        corpus = [{"title": f"Title {tag}", "text": " body text "}, {"text": f" no title {tag} "},
                  {"title": "", "text": f"empty title {tag}"}, {"title": f"only title {tag}", "text": ""}]
        # beir.retrieval.models.SentenceBERT: (title + sep + text).strip() with sep " ", or text.strip() without a title.
        joined = [f"Title {tag}  body text", f"no title {tag}", f"empty title {tag}", f"only title {tag}"]
        expected = client.embed(ARCTIC, joined, kind="document")
        self.assertEqual(self.arctic.encode_corpus(corpus, batch_size=2).tobytes(), expected.tobytes())
        with_titles = {"title": [d["title"] for d in corpus[2:]], "text": [d["text"] for d in corpus[2:]]}
        self.assertEqual(self.arctic.encode_corpus(with_titles).tobytes(), expected[2:].tobytes())
        without = {"text": [" a ", "b "]}
        self.assertEqual(self.arctic.encode_corpus(without).tobytes(), client.embed(ARCTIC, ["a", "b"]).tobytes())

    def test_beir_encode_queries_are_queries_and_take_beirs_arguments(self):
        queries = [f"q {unique()}", "another query"]
        got = self.arctic.encode_queries(queries, batch_size=16, show_progress_bar=False, convert_to_numpy=True)
        self.assertEqual(got.tobytes(), client.embed(ARCTIC, queries, kind="query").tobytes())

    def test_langchain_embeddings_sync_and_async(self):
        docs, query = texts(3), f"what is {unique()}?"
        expected_docs = client.embed(ARCTIC, docs, kind="document").tolist()
        expected_query = client.embed(ARCTIC, [query], kind="query")[0].tolist()
        self.assertEqual(self.arctic.embed_documents(docs), expected_docs)
        self.assertEqual(self.arctic.embed_query(query), expected_query)
        self.assertIsInstance(self.arctic.embed_query(query)[0], float)

        async def both():
            return await asyncio.gather(self.arctic.aembed_documents(docs), self.arctic.aembed_query(query))

        self.assertEqual(asyncio.run(both()), [expected_docs, expected_query])

    def test_llamaindex_adapter_imports_llama_index_only_when_used(self):
        from embedding_cache import llamaindex

        self.assertNotIn("llama_index", sys.modules)
        if importlib.util.find_spec("llama_index") is None:
            with self.assertRaises(ImportError) as caught:
                llamaindex.llama_index_embedding(self.arctic)
            self.assertIn("llama-index-core", str(caught.exception))
            stub = install_llama_index_stub()
        else:
            stub = None
        try:
            llamaindex._CLASS = None
            embedding = llamaindex.llama_index_embedding(self.arctic)
            docs, query = texts(2), f"llama {unique()}"
            self.assertEqual(embedding.get_query_embedding(query), client.embed(ARCTIC, [query], kind="query")[0].tolist())
            self.assertEqual(embedding.get_text_embedding_batch(docs), client.embed(ARCTIC, docs).tolist())
            self.assertEqual(embedding.get_text_embedding(docs[0]), client.embed(ARCTIC, docs[:1])[0].tolist())
            self.assertEqual(asyncio.run(embedding.aget_query_embedding(query)), embedding.get_query_embedding(query))
            self.assertEqual(asyncio.run(embedding.aget_text_embedding(docs[1])), embedding.get_text_embedding(docs[1]))
            self.assertEqual(embedding.model_name, ARCTIC)
        finally:
            llamaindex._CLASS = None
            if stub:
                for name in stub:
                    sys.modules.pop(name, None)


def install_llama_index_stub():
    """llama_index.core's public BaseEmbedding calls (get_* -> _get_*), for machines without llama-index-core:
    the adapter must implement the private methods that LlamaIndex's BaseEmbedding declares abstract."""
    class BaseEmbedding:
        def __init__(self, model_name="unknown", embed_batch_size=10, **kwargs):
            self.model_name = model_name
            self.embed_batch_size = embed_batch_size

        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__(**kwargs)
            for name in ("_get_query_embedding", "_aget_query_embedding", "_get_text_embedding"):
                if not callable(getattr(cls, name, None)):
                    raise TypeError(f"{cls.__name__} does not implement {name}")

        def get_query_embedding(self, query):
            return self._get_query_embedding(query)

        def get_text_embedding(self, text):
            return self._get_text_embedding(text)

        def get_text_embedding_batch(self, texts):
            return [v for i in range(0, len(texts), self.embed_batch_size) for v in self._get_text_embeddings(texts[i:i + self.embed_batch_size])]

        async def aget_query_embedding(self, query):
            return await self._aget_query_embedding(query)

        async def aget_text_embedding(self, text):
            return await self._aget_text_embedding(text)

    modules = {name: types.ModuleType(name) for name in
               ("llama_index", "llama_index.core", "llama_index.core.embeddings", "llama_index.core.bridge", "llama_index.core.bridge.pydantic")}
    modules["llama_index.core.embeddings"].BaseEmbedding = BaseEmbedding
    modules["llama_index.core.bridge.pydantic"].PrivateAttr = lambda: None
    sys.modules.update(modules)
    return list(modules)


class AsyncClientTests(unittest.TestCase):
    def test_every_method_of_client_is_a_coroutine_of_async_client(self):
        sync_only = {"close", "encoder"}
        methods = {name for name, value in inspect.getmembers(ec.Client, inspect.isfunction) if not name.startswith("_")} - sync_only
        self.assertTrue({"embed", "embed_with_sources", "embed_many", "get", "put", "invalidate", "models", "stats", "score"} <= methods)
        self.assertEqual(sorted(methods - set(dir(ec.AsyncClient))), [])

    def test_async_calls_give_what_the_sync_client_gives(self):
        model, ids = unique("py-async"), [unique("id") for _ in range(4)]
        rows = np.random.default_rng(3).uniform(1, 2, (4, 8)).astype(np.float32)
        batch, corpus = texts(3), texts(2 * MAX_ROWS + 3)

        async def run():
            async with ec.AsyncClient(ADDRESS, timeout=300) as cache:
                embedded_batch = await cache.embed(MINILM, batch)
                with_sources = await cache.embed_with_sources(MINILM, batch)
                stored = await cache.put(model, rows, ids=ids)
                got = await cache.get(model, ids=ids + ["absent"])
                streamed = await cache.embed_many(MINILM, corpus, batch_size=MAX_ROWS)
                scored = await cache.score(MINILM, batch[:1], document_texts=batch, top_k=2)
                models = await cache.models()
                stats = await cache.stats(MINILM)
                removed = await cache.invalidate(model)
                with self.assertRaises(ec.ModelNotFoundError):
                    await cache.embed("no-such-model", ["x"])
                with self.assertRaises(ec.EmbeddingCacheError):
                    await cache.embed(MINILM, corpus)  # over the request limit: refused, as from Client
                return embedded_batch, with_sources, stored, got, streamed, scored, models, stats, removed

        embedded_batch, with_sources, stored, got, streamed, scored, models, stats, removed = asyncio.run(run())
        self.assertEqual(embedded_batch.tobytes(), client.embed(MINILM, batch).tobytes())
        self.assertEqual(list(with_sources.sources), ["cached"] * 3)
        self.assertIn("lookup", with_sources.timings)
        self.assertEqual(stored, 4)
        self.assertEqual(got.found.tolist(), [True] * 4 + [False])
        self.assertEqual(got.vectors[:4].tobytes(), rows.tobytes())
        self.assertEqual(streamed.tobytes(), embedded(MINILM, corpus, "document").tobytes())
        np.testing.assert_allclose(scored.scores, client.score(MINILM, batch[:1], document_texts=batch).scores, atol=1e-6)
        self.assertEqual(len(scored.top[0]), 2)
        self.assertIn(MINILM, {m.name for m in models})
        self.assertGreater(stats.hits, 0)
        self.assertEqual(removed.rows_removed, 4)


if __name__ == "__main__":
    unittest.main()
