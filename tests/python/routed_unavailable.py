"""The Python client against nginx whose upstreams are all down: a read is retried (the test counts nginx's lines), a
write is sent once, and both raise UnavailableError with nginx's message.

    /usr/bin/python3 routed_unavailable.py NGINX_ADDRESS
"""
import asyncio
import sys

import numpy as np

from embedding_cache import AsyncClient, Client, UnavailableError


def expect_unavailable(call, message):
    try:
        call()
    except UnavailableError as e:
        assert message in e.details, e
        return
    raise AssertionError("the call did not fail UNAVAILABLE")


async def async_read(address):
    async with AsyncClient(address) as cache:
        try:
            await cache.get("py-async-read", ids=["a"])
        except UnavailableError as e:
            assert "no follower answered" in e.details, e
            return
    raise AssertionError("the asyncio read did not fail UNAVAILABLE")


def main(address):
    with Client(address) as cache:
        expect_unavailable(lambda: cache.get("py-read", ids=["a"]), "no follower answered")
        expect_unavailable(lambda: cache.put("py-write", np.ones((1, 4), np.float32), ids=["a"]), "the writer of the model did not answer")
    asyncio.run(async_read(address))
    print("routed_unavailable: reads and writes failed UNAVAILABLE with nginx's messages")


if __name__ == "__main__":
    main(*sys.argv[1:])
