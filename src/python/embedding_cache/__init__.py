"""Python client of EmbeddingCache: exact text embeddings served over gRPC from memory-mapped numpy files.

Quickstart::

    from embedding_cache import Client, open_cache

    with Client("127.0.0.1:50051") as cache:
        docs = cache.embed("all-MiniLM-L6-v2", ["first passage", "second passage"], ids=["d1", "d2"])
        queries = cache.embed("all-MiniLM-L6-v2", ["what is dense retrieval?"], kind="query")
        scores = queries @ docs.T                                   # (1, 2) cosine: vectors are normalized
        found = cache.get("all-MiniLM-L6-v2", ids=["d1", "d3"])     # .vectors, .found == [True, False]
        print(cache.stats("all-MiniLM-L6-v2").hit_rate)

    files = open_cache("artifacts", "all-MiniLM-L6-v2", kind="document")   # no server: memmaps + sidecars
    vectors, found = files.get(["d1", "d2"])

Errors raise EmbeddingCacheError (``.code`` is the gRPC status name, ``.details`` the server's message).
"""
from .client import (
    AsyncClient,
    Client,
    EmbedResult,
    EmbeddingCacheError,
    FailedPreconditionError,
    GetResult,
    ScoreResult,
    Invalidated,
    InvalidArgumentError,
    ModelInfo,
    ModelNotFoundError,
    ModelStats,
    ResourceExhaustedError,
    UnavailableError,
)
from .encoder import Encoder
from .files import CacheFiles, LazyVectors, content_key, open_cache

__all__ = [
    "AsyncClient",
    "CacheFiles",
    "Client",
    "EmbedResult",
    "EmbeddingCacheError",
    "Encoder",
    "FailedPreconditionError",
    "GetResult",
    "Invalidated",
    "InvalidArgumentError",
    "LazyVectors",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelStats",
    "ResourceExhaustedError",
    "ScoreResult",
    "UnavailableError",
    "content_key",
    "open_cache",
]
__version__ = "0.1.0"
