"""memq serve's own RESP client (memq/api/resp.py) against the real Redis: pipelined
commands answered in order, a dropped connection, a refused handshake, pub/sub."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest
import redis

from memq.api.resp import Pipe, RedisReplyError, subscribe


@pytest.fixture
def url(spare_redis_url: str) -> str:
    return spare_redis_url


def test_concurrent_calls_share_one_connection_and_each_gets_its_reply(url: str):
    async def main() -> list[bytes]:
        pipe = Pipe(urlsplit(url))
        try:
            return await asyncio.gather(*(pipe.call("LPUSH", "q", f"m{i}") for i in range(200)))
        finally:
            await pipe.close()

    replies = asyncio.run(main())
    # every LPUSH answered with the list's length after it, in the order they were sent, on the URL's db
    assert replies == [b":%d" % (i + 1) for i in range(200)]
    assert redis.Redis.from_url(url).lrange("q", 0, -1)[::-1] == [f"m{i}".encode() for i in range(200)]


def test_a_dropped_connection_fails_its_waiting_callers_and_the_next_call_reconnects(url: str):
    async def main() -> bytes:
        pipe = Pipe(urlsplit(url), timeout_s=5.0)
        try:
            await pipe.call("LPUSH", "q", "before")
            client_id = int((await pipe.call("CLIENT", "ID"))[1:])
            # given a caller waiting on the connection (BLPOP on an empty list)
            waiting = asyncio.ensure_future(pipe.call("BLPOP", "empty", "4"))
            await asyncio.sleep(0.2)
            # when Redis drops the connection (that one only: the server is shared)
            assert redis.Redis.from_url(url).client_kill_filter(_id=client_id) == 1
            # then the waiting caller learns it at once, and the next call reconnects
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(waiting, 2.0)
            return await pipe.call("LPUSH", "q", "after")
        finally:
            await pipe.close()

    assert asyncio.run(main()) == b":2"
    assert redis.Redis.from_url(url).lrange("q", 0, -1) == [b"after", b"before"]


def test_a_refused_handshake_is_an_error_and_sends_nothing(url: str):
    parts = urlsplit(url.replace("redis://", "redis://:wrong-password@"))

    async def main() -> None:
        pipe = Pipe(parts, timeout_s=2.0)
        try:
            await pipe.call("LPUSH", "q", "x")
        finally:
            await pipe.close()

    with pytest.raises(RedisReplyError):
        asyncio.run(main())
    assert redis.Redis.from_url(url).llen("q") == 0


def test_subscribe_confirms_then_yields_each_message(url: str):
    async def main() -> list[bytes | None]:
        got: list[bytes | None] = []
        stream = subscribe(urlsplit(url), "memq:test-events", timeout_s=2.0)
        got.append(await anext(stream))  # the confirmation
        publisher = redis.Redis.from_url(url)
        for text in ("run-1 done 1", "run-2 failed 3", "é " * 5000):
            publisher.publish("memq:test-events", text)
        for _ in range(3):
            got.append(await asyncio.wait_for(anext(stream), 5))
        await stream.aclose()
        return got

    got = asyncio.run(main())
    assert got == [None, b"run-1 done 1", b"run-2 failed 3", ("é " * 5000).encode()]
