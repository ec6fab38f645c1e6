"""The gRPC client of an EmbeddingCache server."""
import collections
import dataclasses
import json
import math
import os
from typing import Dict, Optional

import grpc
import grpc.aio
import numpy as np

from . import _proto
from .rerank import rerank_request, rerank_results

_KIND = _proto.enum_values("Kind")
_DTYPE = _proto.enum_values("DType")
_ROW_SOURCE = _proto.enum_values("RowSource")
_METHODS = _proto.methods()

# RowSource number -> name users compare against ("missing", "cached", "computed").
_SOURCE_NAMES = np.array(
    [name[len("ROW_SOURCE_"):].lower() if name != "ROW_SOURCE_UNSPECIFIED" else "unspecified"
     for name, _ in sorted(_ROW_SOURCE.items(), key=lambda item: item[1])],
    dtype=str,
)
_MISSING = _ROW_SOURCE["ROW_SOURCE_MISSING"]

# Reads (Get, Score, ListModels) failing UNAVAILABLE are sent again, never writes: behind nginx, a read in flight on a
# follower that dies fails so (nginx cannot resend a gRPC request it has streamed on) and the next attempt reaches
# another follower; a Put or Invalidate sent twice would be a second write.
_READ_RETRY = json.dumps({"methodConfig": [{
    "name": [{"service": "embeddingcache.v1.EmbeddingCache", "method": m} for m in ("Get", "Score", "ListModels")],
    "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.05s", "maxBackoff": "1s", "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"]},
}]})
# A 10,000 x 384 float32 reply is 15 MB, over grpc's 4 MB default: lift the limits both ways.
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", _READ_RETRY),
]
_TIMING_PREFIX = "embcache-"
_TIMING_SUFFIX = "-us"
# The model a call names, sent as request metadata too, so that a proxy (nginx's gRPC module) routes on it without
# parsing protobuf. Hyphenated: nginx drops header names with underscores. The server serves the request's own field.
_MODEL_HEADER = "embcache-model"


class EmbeddingCacheError(Exception):
    """A call the server refused or that failed on the way.

    ``code`` is the gRPC status name (``"NOT_FOUND"``, ``"INVALID_ARGUMENT"``, ...), ``details`` the
    server's message (what to do about it), ``field`` the request field at fault when the server names one.
    Subclasses per code let you ``except ModelNotFoundError:``.
    """

    def __init__(self, code, details, field=None):
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details
        self.field = field


class InvalidArgumentError(EmbeddingCacheError, ValueError):
    """The request is malformed: bad model name, unspecified kind, length mismatch, NaN/Inf, wrong dims."""


class ModelNotFoundError(EmbeddingCacheError, LookupError):
    """The server knows no model of that name."""


class FailedPreconditionError(EmbeddingCacheError):
    """A miss on a store-only model, or a model folder that is broken."""


class ResourceExhaustedError(EmbeddingCacheError):
    """The request is over a configured limit, or the server's disk is full."""


class UnavailableError(EmbeddingCacheError):
    """The server is not reachable or is shutting down."""


_ERROR_CLASSES = {
    "INVALID_ARGUMENT": InvalidArgumentError,
    "NOT_FOUND": ModelNotFoundError,
    "FAILED_PRECONDITION": FailedPreconditionError,
    "RESOURCE_EXHAUSTED": ResourceExhaustedError,
    "UNAVAILABLE": UnavailableError,
}


def _error_from(rpc_error):
    code = rpc_error.code().name if rpc_error.code() is not None else "UNKNOWN"
    field = None
    try:
        for key, value in rpc_error.trailing_metadata() or ():
            if key == "embcache-field":
                field = value
    except Exception:  # not every RpcError carries metadata (e.g. a channel that never connected)
        pass
    return _ERROR_CLASSES.get(code, EmbeddingCacheError)(code, rpc_error.details() or "", field)


@dataclasses.dataclass(frozen=True)
class EmbedResult:
    """What ``Client.embed_with_sources`` returns.

    ``vectors``: (n, dims) array, rows in input order (read-only: it wraps the reply's bytes; ``.copy()``
    to modify). ``sources``: numpy array of "cached" / "computed" / "missing" per row. ``fingerprint``: the
    model fingerprint the vectors were made with. ``timings``: microseconds per stage from the server
    (lookup, tokenize, queue, inference, write).
    """

    vectors: np.ndarray
    sources: np.ndarray
    fingerprint: str
    cached_count: int
    computed_count: int
    missing_count: int
    timings: Dict[str, int]


@dataclasses.dataclass(frozen=True)
class GetResult:
    """What ``Client.get`` returns: ``vectors`` (n, dims) in request order, zero rows where ``found`` is False."""

    vectors: np.ndarray
    found: np.ndarray
    found_count: int
    missing_count: int
    timings: Dict[str, int]


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    """What ``Client.score`` returns.

    ``scores``: (queries, documents) cosine matrix, float32. ``top``: per query, when ``top_k`` was given,
    a list of (document index, score), best first. ``query_sources``/``document_sources``: where each
    vector came from ("cached", "computed").
    """

    scores: np.ndarray
    top: list
    query_sources: np.ndarray
    document_sources: np.ndarray


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """One model the server knows (``Client.models``). ``error`` says why a broken model folder cannot serve."""

    name: str
    dims: int
    can_compute: bool
    fingerprint: str
    query_rows: int
    document_rows: int
    bytes: int
    hits: int
    misses: int
    error: Optional[str]
    # How the server makes the vectors, as it read the model folder (empty for a store-only model or a folder not
    # used yet): pooling, max tokens, prefixes, Score's measure, the ONNX file, Dense modules, normalisation.
    pooling: str = ""
    max_tokens: int = 0
    query_prefix: str = ""
    document_prefix: str = ""
    similarity: str = ""
    onnx_file: str = ""
    dense: tuple = ()
    normalize: bool = False

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses) since the server started; NaN before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else math.nan


@dataclasses.dataclass(frozen=True)
class ModelStats:
    """Cache effectiveness of one model (``Client.stats``)."""

    name: str
    hits: int
    misses: int
    hit_rate: float
    query_rows: int
    document_rows: int
    bytes: int


Invalidated = collections.namedtuple("Invalidated", ["rows_removed", "bytes_removed"])
Invalidated.__doc__ = "What ``Client.invalidate`` removed: rows and bytes."


# Every name a kind goes by, in this client and in the frameworks it plugs into (MTEB's PromptType values,
# sentence-transformers' prompt names, BEIR's corpus).
_KIND_NAMES = {"query": "query", "document": "document", "passage": "document", "corpus": "document"}


def kind_name(kind):
    """"query" or "document" for any name a kind goes by: ``query``, ``document``, ``passage``, ``corpus``, or an
    enum whose ``.value`` is one of them (MTEB's ``PromptType``). Anything else raises ValueError."""
    name = getattr(kind, "value", kind)
    if isinstance(name, str) and name.lower() in _KIND_NAMES:
        return _KIND_NAMES[name.lower()]
    raise ValueError(f"kind must be 'query' or 'document' (or 'passage', 'corpus'), not {kind!r}")


def _kind(kind, allow_none=False):
    if kind is None and allow_none:
        return _KIND["KIND_UNSPECIFIED"]
    return _KIND[f"KIND_{kind_name(kind).upper()}"]


def _dtype(dtype):
    """(wire enum, numpy little-endian dtype) for "float32"/"float16"/numpy dtypes."""
    np_dtype = np.dtype(dtype)
    if np_dtype == np.float32:
        return _DTYPE["DTYPE_FLOAT32"], np.dtype("<f4")
    if np_dtype == np.float16:
        return _DTYPE["DTYPE_FLOAT16"], np.dtype("<f2")
    raise ValueError(f"dtype must be float32 or float16, not {dtype!r}")


def _strings(values, what):
    if values is None:
        return None
    if isinstance(values, str):
        return [values]
    values = list(values)
    for v in values:
        if not isinstance(v, str):
            raise TypeError(f"{what} must be strings, got {type(v).__name__}: {v!r}")
    return values


def _decode(vectors):
    """Packed wire vectors -> (count, dims) numpy array, without copying the reply's bytes."""
    np_dtype = "<f2" if vectors.dtype == _DTYPE["DTYPE_FLOAT16"] else "<f4"
    return np.frombuffer(vectors.data, np_dtype).reshape(vectors.count, vectors.dims)


def _sources(response):
    return np.asarray(response.sources, dtype=np.intp)


def _timings(metadata):
    timings = {}
    for key, value in metadata or ():
        if key.startswith(_TIMING_PREFIX) and key.endswith(_TIMING_SUFFIX):
            try:
                timings[key[len(_TIMING_PREFIX):-len(_TIMING_SUFFIX)]] = int(value)
            except ValueError:
                pass
    return timings


# ---- Requests and replies, built and read here once for Client and AsyncClient --------------------------------
# Each RPC has a *_request function (validates the arguments, raises before any call) and a *_result function
# (response, trailing metadata) -> what the method returns.

_REQUESTS = {name: request for name, (_, request, _) in _METHODS.items()}
_UNARY = ("Embed", "Get", "Put", "Invalidate", "ListModels", "Score")


def _embed_request(model, texts, kind, ids, dtype, cache_only):
    request = _REQUESTS["Embed"](model=model, kind=_kind(kind), dtype=_dtype(dtype)[0], cache_only=bool(cache_only))
    request.texts.extend(_strings(texts, "texts"))
    if ids is not None:
        request.ids.extend(_strings(ids, "ids"))
    return request


def _embed_result(response, metadata):
    return EmbedResult(
        vectors=_decode(response.vectors),
        sources=_SOURCE_NAMES[_sources(response)],
        fingerprint=response.fingerprint,
        cached_count=response.cached_count,
        computed_count=response.computed_count,
        missing_count=response.missing_count,
        timings=_timings(metadata),
    )


def _embed_vectors(response, metadata):
    return _decode(response.vectors)


def _stream_requests(model, texts, kind, ids, dtype, batch_size):
    """The EmbedStream requests of a corpus, ``batch_size`` texts each (validated before the first is sent)."""
    texts = _strings(texts, "texts")
    ids = None if ids is None else _strings(ids, "ids")
    if ids is not None and len(ids) != len(texts):
        raise ValueError(f"ids has {len(ids)} entries but texts has {len(texts)}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
    batch_size, wire_kind, wire_dtype = int(batch_size), _kind(kind), _dtype(dtype)[0]

    def requests():
        for start in range(0, len(texts), batch_size):
            request = _REQUESTS["Embed"](model=model, kind=wire_kind, dtype=wire_dtype)
            request.texts.extend(texts[start:start + batch_size])
            if ids is not None:
                request.ids.extend(ids[start:start + batch_size])
            yield request

    return requests()


def _add_part(parts, response, progress):
    parts.append(_decode(response.vectors))
    if progress is not None:
        progress(len(parts[-1]))


def _stream_result(parts, dtype):
    if not parts:
        return np.zeros((0, 0), dtype=_dtype(dtype)[1])
    return np.concatenate(parts)


def _score_request(model, queries, document_ids, document_texts, top_k):
    if document_ids is None and document_texts is None:
        raise ValueError("pass document_ids and/or document_texts")
    request = _REQUESTS["Score"](model=model, top_k=int(top_k))
    request.queries.extend(_strings(queries, "queries"))
    if document_ids is not None:
        request.document_ids.extend(_strings(document_ids, "document_ids"))
    if document_texts is not None:
        request.document_texts.extend(_strings(document_texts, "document_texts"))
    return request


def _score_result(response, metadata):
    scores = np.frombuffer(response.scores, dtype="<f4").reshape(response.query_count, response.document_count)
    return ScoreResult(
        scores=scores,
        top=[list(zip(t.indexes, t.scores)) for t in response.top],
        query_sources=_SOURCE_NAMES[np.array(response.query_sources, dtype=np.int64)],
        document_sources=_SOURCE_NAMES[np.array(response.document_sources, dtype=np.int64)],
    )


def _get_request(model, ids, texts, kind, dtype):
    if (ids is None) == (texts is None):
        raise ValueError("pass either ids or texts")
    request = _REQUESTS["Get"](model=model, kind=_kind(kind), dtype=_dtype(dtype)[0])
    if ids is not None:
        request.ids.extend(_strings(ids, "ids"))
    else:
        request.texts.extend(_strings(texts, "texts"))
    return request


def _get_result(response, metadata):
    return GetResult(
        vectors=_decode(response.vectors),
        found=_sources(response) != _MISSING,
        found_count=response.found_count,
        missing_count=response.missing_count,
        timings=_timings(metadata),
    )


def _put_request(model, vectors, ids, texts, kind):
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise ValueError(f"vectors must be a 2-D (rows, dims) array, got shape {array.shape}")
    if array.dtype == np.float16:
        wire_dtype, array = _DTYPE["DTYPE_FLOAT16"], np.ascontiguousarray(array, dtype="<f2")
    else:
        wire_dtype, array = _DTYPE["DTYPE_FLOAT32"], np.ascontiguousarray(array, dtype="<f4")
    if ids is None and texts is None:
        raise ValueError("pass ids and/or texts, one per row of vectors")
    request = _REQUESTS["Put"](model=model, kind=_kind(kind))
    if ids is not None:
        request.ids.extend(_strings(ids, "ids"))
    if texts is not None:
        request.texts.extend(_strings(texts, "texts"))
    request.vectors.count = array.shape[0]
    request.vectors.dims = array.shape[1]
    request.vectors.dtype = wire_dtype
    request.vectors.data = array.tobytes()
    return request


def _put_result(response, metadata):
    return response.stored


def _invalidate_request(model, kind):
    return _REQUESTS["Invalidate"](model=model, kind=_kind(kind, allow_none=True))


def _invalidate_result(response, metadata):
    return Invalidated(response.rows_removed, response.bytes_removed)


def _models_result(response, metadata):
    return [
        ModelInfo(name=m.name, dims=m.dims, can_compute=m.can_compute, fingerprint=m.fingerprint,
                  query_rows=m.query_rows, document_rows=m.document_rows, bytes=m.bytes,
                  hits=m.hits, misses=m.misses, error=m.error or None, pooling=m.pooling, max_tokens=m.max_tokens,
                  query_prefix=m.query_prefix, document_prefix=m.document_prefix, similarity=m.similarity,
                  onnx_file=m.onnx_file, dense=tuple(m.dense), normalize=m.normalize)
        for m in response.models
    ]


def _stats_result(model):
    def parse(response, metadata):
        result = {
            m.name: ModelStats(name=m.name, hits=m.hits, misses=m.misses, hit_rate=m.hit_rate,
                               query_rows=m.query_rows, document_rows=m.document_rows, bytes=m.bytes)
            for m in _models_result(response, metadata)
        }
        if model is None:
            return result
        if model not in result:
            raise ModelNotFoundError("NOT_FOUND", f"the server knows no model '{model}'; it knows: {', '.join(sorted(result))}")
        return result[model]
    return parse


def _address(address):
    """(target, secure) of an address given as host:port, http://host:port or https://host:port; None reads
    EMBCACHE_ADDRESS, else 127.0.0.1:50051."""
    if address is None:
        address = os.environ.get("EMBCACHE_ADDRESS") or "127.0.0.1:50051"
    if address.startswith("https://"):
        return address[len("https://"):].rstrip("/"), True
    if address.startswith("http://"):
        address = address[len("http://"):]
    return address.rstrip("/"), False


def _carries(model):
    """Whether ``model`` can travel as a header value (printable ASCII); a name that cannot is refused by the server."""
    return isinstance(model, str) and model != "" and all(" " <= c <= "~" for c in model)


def _model_of(request):
    """The model a request names, or None (ListModels)."""
    return request.model if "model" in request.DESCRIPTOR.fields_by_name else None


class _Methods:
    """The methods of both clients. Each builds its request and reads its reply with the module's functions;
    ``_unary`` and ``_stream`` make the call, returning the result (Client) or an awaitable of it (AsyncClient).
    """

    def __init__(self, address, api_key, timeout):
        self.address, self._secure = _address(address)
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()

    def _metadata_for(self, model):
        """The call's request metadata: the api key and, when the call names one, the model for a proxy to route on."""
        if model is None or not _carries(model):
            return self._metadata or None
        return self._metadata + ((_MODEL_HEADER, model),)

    def _bind(self, channel):
        self._channel = channel
        self._calls = {
            name: channel.unary_unary(path, request_serializer=request.SerializeToString, response_deserializer=response.FromString)
            for name, (path, request, response) in _METHODS.items() if name in _UNARY
        }
        path, request, response = _METHODS["EmbedStream"]
        self._embed_stream = channel.stream_stream(path, request_serializer=request.SerializeToString, response_deserializer=response.FromString)

    def __repr__(self):
        return f"{type(self).__name__}({self.address!r})"

    def embed(self, model, texts, kind="document", ids=None, dtype="float32", cache_only=False):
        """Vectors of ``texts`` as an (n, dims) array in input order: cached rows are served, missing ones
        computed on the server and cached. ``ids`` (same length) stores each row under an id too;
        ``cache_only=True`` never computes (missing rows come back zero). A single str is treated as [str].
        """
        return self._unary("Embed", _embed_request(model, texts, kind, ids, dtype, cache_only), _embed_vectors)

    def embed_with_sources(self, model, texts, kind="document", ids=None, dtype="float32", cache_only=False):
        """Like ``embed``, also saying per row where it came from, the counts, fingerprint and timings (an EmbedResult)."""
        return self._unary("Embed", _embed_request(model, texts, kind, ids, dtype, cache_only), _embed_result)

    def embed_many(self, model, texts, kind="document", ids=None, dtype="float32", batch_size=256, progress=None):
        """Vectors of a whole corpus, streamed in batches of ``batch_size`` over one ``EmbedStream`` call
        (no request-size limit, the server computes the next batches while earlier ones travel back).
        Returns one (n, dims) array in input order. ``progress``, if given, is called with the row count of
        each batch as it arrives.
        """
        return self._stream(model, _stream_requests(model, texts, kind, ids, dtype, batch_size),
                            lambda parts: _stream_result(parts, dtype), progress)

    def score(self, model, queries, document_ids=None, document_texts=None, top_k=0):
        """Cosine scores of ``queries`` against candidate documents given by ``document_ids`` (cached vectors,
        e.g. a corpus Put by a GPU job) and/or ``document_texts`` (computed when missing; with ids too, stored
        under them). Missing query vectors are computed. ``top_k`` > 0 also returns the best documents per query.
        """
        return self._unary("Score", _score_request(model, queries, document_ids, document_texts, top_k), _score_result)

    def rerank(self, model, queries, results, corpus=None, top_k=100):
        """BEIR's ``Rerank.rerank`` with the model's similarity: ``queries`` is ``{qid: text}``, ``results`` the first
        stage's ``{qid: {doc_id: score}}``; each query's ``top_k`` best first-stage candidates are scored against it,
        and ``{qid: {doc_id: score}}`` comes back (best first), in ONE Score call. Candidates are fetched by id;
        ``corpus`` (``{doc_id: {"title", "text"}}``, joined as BEIR joins them) lets the server compute the ones it
        lacks. A candidate with neither raises ``FailedPreconditionError`` naming it.
        """
        request, plan = rerank_request(_REQUESTS["Score"], model, queries, results, corpus, top_k)
        return self._unary("Score", request, lambda response, _: rerank_results(response, plan, _MISSING))

    def get(self, model, ids=None, texts=None, kind="document", dtype="float32"):
        """Cached vectors by ``ids`` or by ``texts`` (one of them), never computing: ``.vectors`` in request
        order with zero rows where ``.found`` is False (a GetResult).
        """
        return self._unary("Get", _get_request(model, ids, texts, kind, dtype), _get_result)

    def put(self, model, vectors, ids=None, texts=None, kind="document"):
        """Stores vectors made elsewhere (a 2-D float32 or float16 array, one row per id and/or text) and
        returns how many rows were stored. A new model name becomes a store-only model with these dims.
        Other float arrays are converted to float32.
        """
        return self._unary("Put", _put_request(model, vectors, ids, texts, kind), _put_result)

    def invalidate(self, model, kind=None):
        """Drops the model's cache (one kind, or every kind when ``kind`` is None) atomically: nothing
        cached before is served afterwards. Returns ``Invalidated(rows_removed, bytes_removed)``.
        """
        return self._unary("Invalidate", _invalidate_request(model, kind), _invalidate_result)

    def models(self):
        """Every model the server knows (ModelInfo list): built-in and model folders that compute, and store-only caches."""
        return self._unary("ListModels", _REQUESTS["ListModels"](), _models_result)

    def stats(self, model=None):
        """Hits, misses and hit rate since the server started: ``{name: ModelStats}``, or one
        ``ModelStats`` when ``model`` is given (``ModelNotFoundError`` if the server does not know it).
        """
        return self._unary("ListModels", _REQUESTS["ListModels"](), _stats_result(model))


class Client(_Methods):
    """A connection to an EmbeddingCache server.

    ``Client("127.0.0.1:50051")`` (an ``http://`` prefix is accepted; ``https://`` uses TLS); with no address,
    EMBCACHE_ADDRESS or 127.0.0.1:50051. ``api_key`` is sent as ``authorization: Bearer <key>`` metadata.
    ``timeout`` is the deadline of every call in seconds (None: no deadline). Use it as a context manager or
    call ``close()``. ``AsyncClient`` has the same methods for asyncio.
    """

    def __init__(self, address=None, *, api_key=None, timeout=None):
        super().__init__(address, api_key, timeout)
        if self._secure:
            channel = grpc.secure_channel(self.address, grpc.ssl_channel_credentials(), _CHANNEL_OPTIONS)
        else:
            channel = grpc.insecure_channel(self.address, _CHANNEL_OPTIONS)
        self._bind(channel)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Closes the channel; calls after this fail."""
        self._channel.close()

    def encoder(self, model, similarity_fn_name="cosine"):
        """``model`` as an object that behaves like a sentence-transformers model and speaks the BEIR, MTEB and
        LangChain protocols (an ``Encoder``), every vector served through this client's cache."""
        from .encoder import Encoder

        return Encoder(self, model, similarity_fn_name)

    def _unary(self, name, request, parse):
        try:
            response, call = self._calls[name].with_call(request, timeout=self.timeout, metadata=self._metadata_for(_model_of(request)))
        except grpc.RpcError as e:
            raise _error_from(e) from None
        return parse(response, call.trailing_metadata())

    def _stream(self, model, requests, parse, progress):
        parts = []
        try:
            for response in self._embed_stream(requests, timeout=self.timeout, metadata=self._metadata_for(model)):
                _add_part(parts, response, progress)
        except grpc.RpcError as e:
            raise _error_from(e) from None
        return parse(parts)


class AsyncClient(_Methods):
    """The asyncio form of ``Client`` (grpc.aio): the same methods, each a coroutine.

    ``async with AsyncClient("127.0.0.1:50051") as cache: vectors = await cache.embed(model, texts)``.
    Create it inside the running event loop; ``await close()`` when not used as a context manager.
    """

    def __init__(self, address=None, *, api_key=None, timeout=None):
        super().__init__(address, api_key, timeout)
        if self._secure:
            channel = grpc.aio.secure_channel(self.address, grpc.ssl_channel_credentials(), _CHANNEL_OPTIONS)
        else:
            channel = grpc.aio.insecure_channel(self.address, _CHANNEL_OPTIONS)
        self._bind(channel)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
        """Closes the channel; calls after this fail."""
        await self._channel.close()

    async def _unary(self, name, request, parse):
        try:
            call = self._calls[name](request, timeout=self.timeout, metadata=self._metadata_for(_model_of(request)))
            response = await call
            metadata = await call.trailing_metadata()
        except grpc.RpcError as e:
            raise _error_from(e) from None
        return parse(response, metadata)

    async def _stream(self, model, requests, parse, progress):
        parts = []
        try:
            async for response in self._embed_stream(requests, timeout=self.timeout, metadata=self._metadata_for(model)):
                _add_part(parts, response, progress)
        except grpc.RpcError as e:
            raise _error_from(e) from None
        return parse(parts)
