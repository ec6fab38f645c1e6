"""A server model that behaves like a sentence-transformers model, and speaks the protocols of BEIR, MTEB and
LangChain, duck-typed: no framework is imported. ``Client.encoder(model)`` makes one.
"""
import asyncio

import numpy as np

from .client import kind_name
from .rerank import beir_document_text

# Arguments of SentenceTransformer.encode that would change the vectors in a way this encoder cannot honour:
# refused, never ignored (a silently different vector is worse than an error).
_REFUSED = {
    "prompt": "the server applies the model's own query/document prefix: pass prompt_name='query' or 'document'",
    "output_value": "only sentence embeddings are served (output_value='sentence_embedding')",
    "precision": "vectors are float32 (precision='float32')",
}
_ACCEPTED_VALUES = {"output_value": "sentence_embedding", "precision": "float32"}


class Encoder:
    """One model of an EmbeddingCache server, used where a ``SentenceTransformer`` would be.

    ``encode`` takes sentence-transformers' arguments (and MTEB's ``task_name``/``prompt_type``); a single
    string gives a 1-D array, a list an (n, dims) array. Any number of sentences works: they are streamed in
    batches of ``batch_size`` (a tqdm bar with ``show_progress_bar=True`` when tqdm is installed). The kind
    (query or document) comes from ``prompt_name`` or ``prompt_type``: ``query``, ``document``, ``passage``,
    ``corpus``, or an enum with such a ``.value``; neither means document. Vectors are exactly what
    ``Client.embed`` returns for the same texts and kind.
    """

    def __init__(self, client, model, similarity_fn_name="cosine"):
        if similarity_fn_name not in ("cosine", "dot"):
            raise ValueError(f"similarity_fn_name must be 'cosine' or 'dot', not {similarity_fn_name!r}")
        self.client = client
        self.model = model
        self.similarity_fn_name = similarity_fn_name
        self._dims = None

    def __repr__(self):
        return f"Encoder({self.model!r} via {self.client!r})"

    # ---- sentence-transformers --------------------------------------------------------------------------------

    def encode(self, sentences, prompt_name=None, batch_size=32, show_progress_bar=None, convert_to_numpy=True,
               normalize_embeddings=False, *, task_name=None, prompt_type=None, convert_to_tensor=False, **kwargs):
        """Vectors of ``sentences`` (a str: 1-D; a list: (n, dims) float32, or a list of 1-D arrays with
        ``convert_to_numpy=False``, or a torch tensor with ``convert_to_tensor=True``). ``task_name`` (MTEB)
        does not change the vectors."""
        for name, reason in _REFUSED.items():
            if name in kwargs and kwargs[name] != _ACCEPTED_VALUES.get(name):
                raise ValueError(f"{name}={kwargs[name]!r} is not supported: {reason}")
        if prompt_name is not None and prompt_type is not None and kind_name(prompt_name) != kind_name(prompt_type):
            raise ValueError(f"prompt_name={prompt_name!r} and prompt_type={prompt_type!r} ask for different kinds")
        kind = kind_name(prompt_type if prompt_type is not None else prompt_name if prompt_name is not None else "document")
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        vectors = self._embed(texts, kind, batch_size, show_progress_bar)
        if normalize_embeddings:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1, norms)
        if convert_to_tensor:
            try:
                import torch
            except ImportError:
                raise ImportError("convert_to_tensor=True needs torch; install it or pass convert_to_tensor=False") from None
            vectors = torch.from_numpy(np.array(vectors))
            return vectors[0] if single else vectors
        if single:
            return vectors[0]
        return vectors if convert_to_numpy else list(vectors)

    def encode_query(self, sentences, **kwargs):
        """``encode`` as queries (the model's query prefix, if it has one, is applied by the server)."""
        return self.encode(sentences, prompt_name="query", **kwargs)

    def encode_document(self, sentences, **kwargs):
        """``encode`` as documents."""
        return self.encode(sentences, prompt_name="document", **kwargs)

    def similarity(self, embeddings1, embeddings2):
        """(n, m) float32 scores of every row of ``embeddings1`` against every row of ``embeddings2``: cosine,
        or dot product when ``similarity_fn_name`` is "dot"."""
        a = np.atleast_2d(np.asarray(embeddings1, dtype=np.float32))
        b = np.atleast_2d(np.asarray(embeddings2, dtype=np.float32))
        if self.similarity_fn_name == "cosine":
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), np.finfo(np.float32).tiny)
            b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), np.finfo(np.float32).tiny)
        return a @ b.T

    def get_sentence_embedding_dimension(self):
        """The model's dims, as the server reports them."""
        if self._dims is None:
            known = {m.name: m.dims for m in self.client.models()}
            if self.model not in known:
                raise LookupError(f"the server knows no model '{self.model}'; it knows: {', '.join(sorted(known))}")
            self._dims = known[self.model]
        return self._dims

    # ---- BEIR (beir.retrieval.models.SentenceBERT) -----------------------------------------------------------

    def encode_queries(self, queries, batch_size=16, **kwargs):
        """BEIR: vectors of the queries."""
        return self.encode(list(queries), prompt_name="query", batch_size=batch_size, **kwargs)

    def encode_corpus(self, corpus, batch_size=8, **kwargs):
        """BEIR: vectors of the documents, a list of ``{"title", "text"}`` or a dict of lists, title and text
        joined as BEIR's SentenceBERT joins them: ``(title + " " + text).strip()``, or ``text.strip()``
        without a title."""
        return self.encode(beir_texts(corpus), prompt_name="document", batch_size=batch_size, **kwargs)

    # ---- LangChain (langchain_core.embeddings.Embeddings) ----------------------------------------------------

    def embed_documents(self, texts):
        """LangChain: one list of floats per text, as documents."""
        return self.encode_document(list(texts)).tolist()

    def embed_query(self, text):
        """LangChain: the list of floats of one query."""
        return self.encode_query(text).tolist()

    async def aembed_documents(self, texts):
        """LangChain's async ``embed_documents`` (run on the event loop's executor)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.embed_documents, texts)

    async def aembed_query(self, text):
        """LangChain's async ``embed_query`` (run on the event loop's executor)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.embed_query, text)

    # ----------------------------------------------------------------------------------------------------------

    def _embed(self, texts, kind, batch_size, show_progress_bar):
        bar = _progress_bar(len(texts), f"{self.model} {kind}") if show_progress_bar and texts else None
        try:
            vectors = self.client.embed_many(self.model, texts, kind=kind, batch_size=batch_size,
                                             progress=None if bar is None else bar.update)
        finally:
            if bar is not None:
                bar.close()
        if not len(texts):
            return np.zeros((0, self.get_sentence_embedding_dimension()), np.float32)
        return vectors


def beir_texts(corpus):
    """The texts BEIR's SentenceBERT.encode_corpus encodes for a corpus (list of dicts, or dict of lists)."""
    if type(corpus) is dict:
        corpus = [dict(zip(corpus, entry)) for entry in zip(*corpus.values())]
    return [beir_document_text(document) for document in corpus]


def _progress_bar(total, description):
    """A tqdm bar, or None when tqdm is not installed (Debian: python3-tqdm)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit="text")
