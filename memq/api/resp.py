"""Redis on the event loop for `memq serve`'s two per-message uses, in RESP directly.

- `Pipe`: commands with one-line replies (LPUSH, AUTH, SELECT) on one kept-open
  connection, pipelined: each call writes its command and awaits its reply, matched in
  order by one reader task, so concurrent rings share the connection without a lock.
- `subscribe(url, channel)`: the messages of one pub/sub channel as they arrive.

Only plain `redis://host:port/db` URLs (memq/quick/doorbell.py's `is_plain`); others go
through redis-py's asyncio client (memq/api/fast.py, memq/api/watcher.py). redis-py
costs the API process about a tenth of its CPU per message for the same two things.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import SplitResult

from memq.resp import command, handshake


class RedisReplyError(ConnectionError):
    """Redis answered an error (e.g. a wrong password)."""


async def _open(parts: SplitResult, timeout_s: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(timeout_s):
        return await asyncio.open_connection(parts.hostname, parts.port or 6379)


class Pipe:
    def __init__(self, parts: SplitResult, timeout_s: float = 5.0) -> None:
        self._parts = parts
        self.timeout_s = timeout_s
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: deque[asyncio.Future[bytes]] = deque()
        self._connecting: asyncio.Lock | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def call(self, *args: str) -> bytes:
        """The command's one-line reply (e.g. b":3" for LPUSH); ConnectionError when the
        connection fails (the command may or may not have run) or Redis answers an error."""
        async with asyncio.timeout(self.timeout_s):
            writer = self._writer or await self._connect()
            reply = asyncio.get_running_loop().create_future()
            self._waiting.append(reply)
            writer.write(command(*args))
            return await reply

    async def _connect(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            reader, writer = await _open(self._parts, self.timeout_s)
            setup = handshake(self._parts)  # AUTH and SELECT: their replies come first
            replies = [asyncio.get_running_loop().create_future() for _ in setup]
            self._waiting.extend(replies)
            writer.write(b"".join(setup))
            self._reader_task = asyncio.get_running_loop().create_task(self._read(reader, writer))
            self._writer = writer
            try:
                await asyncio.gather(*replies)
            except BaseException:
                self._writer = None  # a refused AUTH or SELECT: never send on this connection
                writer.close()
                raise
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        error: BaseException = ConnectionResetError("redis closed the connection")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                if not self._waiting:
                    continue  # nobody asked (a reply after its caller timed out and gave up)
                reply = self._waiting.popleft()
                if reply.done():
                    continue
                if line.startswith(b"-"):
                    reply.set_exception(RedisReplyError(f"redis answered {line.decode(errors='replace').strip()}"))
                else:
                    reply.set_result(line.rstrip(b"\r\n"))
        except (OSError, asyncio.IncompleteReadError) as exc:
            error = exc
        finally:
            # Every caller still waiting learns the connection is gone; the next call reconnects.
            if self._writer is writer:
                self._writer = None
            waiting, self._waiting = self._waiting, deque()
            for reply in waiting:
                if not reply.done():
                    reply.set_exception(ConnectionError(str(error)))
            writer.close()

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            try:
                await self._reader_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - it is gone either way
                pass


async def subscribe(parts: SplitResult, channel: str, timeout_s: float = 5.0) -> AsyncIterator[bytes | None]:
    """Yields None once Redis confirms the subscription, then each message's data. Ends with
    ConnectionError (or OSError) when the connection drops."""
    reader, writer = await _open(parts, timeout_s)
    try:
        writer.write(b"".join([*handshake(parts), command("SUBSCRIBE", channel)]))
        async with asyncio.timeout(timeout_s):
            for _ in handshake(parts):
                line = await reader.readline()
                if not line.startswith(b"+"):
                    raise RedisReplyError(f"redis answered {line.decode(errors='replace').strip()}")
        while True:
            kind, _, data = await _push(reader)
            if kind == b"message":
                yield data
            elif kind == b"subscribe":
                yield None
    finally:
        writer.close()


async def _push(reader: asyncio.StreamReader) -> list[bytes]:
    """One pub/sub push: an array of bulk strings and integers (RESP2)."""
    head = await reader.readline()
    if not head.startswith(b"*"):
        if not head:
            raise ConnectionResetError("redis closed the connection")
        raise RedisReplyError(f"unexpected reply from redis: {head[:80]!r}")
    items: list[bytes] = []
    for _ in range(int(head[1:])):
        line = await reader.readline()
        if line.startswith(b"$"):
            size = int(line[1:])
            items.append((await reader.readexactly(size + 2))[:-2])
        elif line.startswith(b":"):
            items.append(line[1:].rstrip(b"\r\n"))
        else:
            raise ConnectionResetError("redis closed the connection") if not line else RedisReplyError(
                f"unexpected reply from redis: {line[:80]!r}")
    while len(items) < 3:
        items.append(b"")
    return items
