"""The Python client through nginx (src/EmbeddingCache.Server/deploy/nginx-embcache.conf): every call of the sync and
asyncio clients that names a model, so the test can check nginx saw the embcache-model header and routed on it.

    /usr/bin/python3 routed_client.py NGINX_ADDRESS STORE_ONLY_MODEL COMPUTING_MODEL

Exits non-zero when a reply is not what was sent or served.
"""
import asyncio
import sys

import numpy as np

from embedding_cache import AsyncClient, Client


def main(address, stored, computing):
    vectors = np.arange(4 * 8, dtype=np.float32).reshape(4, 8) + 1
    ids = [f"py-{i}" for i in range(4)]
    with Client(address) as cache:
        assert cache.put(stored, vectors, ids=ids) == 4
        got = cache.get(stored, ids=ids)
        assert got.found.all() and np.array_equal(got.vectors, vectors), got
        embedded = cache.embed(computing, ["routed through nginx"], kind="query")
        streamed = cache.embed_many(computing, ["routed through nginx", "a second text"], kind="query", batch_size=1)
        assert np.array_equal(streamed[0], embedded[0])
        assert computing in {m.name for m in cache.models()}
    asyncio.run(with_async_client(address, stored, vectors, ids))
    print("routed_client: every call answered as sent")


async def with_async_client(address, stored, vectors, ids):
    async with AsyncClient(address) as cache:
        got = await cache.get(stored, ids=ids)
        assert np.array_equal(got.vectors, vectors), got
        removed = await cache.invalidate(stored)
        assert removed.rows_removed >= len(ids), removed


if __name__ == "__main__":
    main(*sys.argv[1:])
