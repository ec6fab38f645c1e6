"""LlamaIndex: a server model as a ``llama_index.core.embeddings.BaseEmbedding``.

llama_index is imported only when ``llama_index_embedding`` is called, so this package never depends on it::

    from embedding_cache import Client
    from embedding_cache.llamaindex import llama_index_embedding

    Settings.embed_model = llama_index_embedding(Client().encoder("all-MiniLM-L6-v2"))

Queries are embedded as queries, nodes' texts as documents, through the server's cache.
"""

_CLASS = None


def _embedding_class():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    try:
        from llama_index.core.bridge.pydantic import PrivateAttr
        from llama_index.core.embeddings import BaseEmbedding
    except ImportError:
        raise ImportError("llama_index_embedding needs llama-index-core (pip install llama-index-core)") from None

    class EmbeddingCacheEmbedding(BaseEmbedding):
        """An EmbeddingCache model (an ``Encoder``) as a LlamaIndex embedding."""

        _encoder = PrivateAttr()

        def __init__(self, encoder, **kwargs):
            kwargs.setdefault("model_name", encoder.model)
            super().__init__(**kwargs)
            self._encoder = encoder

        @classmethod
        def class_name(cls):
            return "EmbeddingCacheEmbedding"

        def _get_query_embedding(self, query):
            return self._encoder.embed_query(query)

        def _get_text_embedding(self, text):
            return self._encoder.embed_documents([text])[0]

        def _get_text_embeddings(self, texts):
            return self._encoder.embed_documents(texts)

        async def _aget_query_embedding(self, query):
            return await self._encoder.aembed_query(query)

        async def _aget_text_embedding(self, text):
            return (await self._encoder.aembed_documents([text]))[0]

        async def _aget_text_embeddings(self, texts):
            return await self._encoder.aembed_documents(texts)

    _CLASS = EmbeddingCacheEmbedding
    return _CLASS


def llama_index_embedding(encoder, **kwargs):
    """A LlamaIndex ``BaseEmbedding`` serving ``encoder``'s vectors (``Client.encoder(model)``); ``kwargs`` go to
    BaseEmbedding (e.g. ``embed_batch_size``)."""
    return _embedding_class()(encoder, **kwargs)
