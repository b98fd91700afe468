"""A TCP forwarder the chaos run controls: one worker reaches its broker through it.

``cut()`` drops the worker's broker connection the nasty way: every open
connection goes silent (bytes are read and thrown away, nothing is forwarded
either way, nothing is closed), and new connections are accepted and treated
alike, so only a client-side deadline tells the worker that something is wrong.
``heal()`` closes everything that was open during the cut (the worker sees its
connections reset) and forwards again.

Runs on its own thread with an asyncio loop; every call is thread-safe.
"""

from __future__ import annotations

import asyncio
import threading

from tests.chaos.harness import free_port


class Proxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = listen_port or free_port(6490)
        self.cut_now = False
        self.connections = 0
        self.cut_connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="chaos-proxy")

    def start(self) -> "Proxy":
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        fut.result(10)
        return self

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.cut_now:
                    continue  # silence: read and drop
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _client(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(c_writer)
        if self.cut_now:  # accepted, never answered
            self.cut_connections += 1
            try:
                while await c_reader.read(65536):
                    pass
            except (ConnectionError, OSError):
                pass
            finally:
                self._writers.discard(c_writer)
                c_writer.close()
            return
        try:
            s_reader, s_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, asyncio.TimeoutError):
            self._writers.discard(c_writer)
            c_writer.close()
            return
        self._writers.add(s_writer)
        try:
            await asyncio.gather(self._pump(c_reader, s_writer), self._pump(s_reader, c_writer))
        finally:
            self._writers.discard(c_writer)
            self._writers.discard(s_writer)

    def cut(self) -> None:
        self.cut_now = True

    def heal(self) -> None:
        """Reset every connection that was open (or opened) during the cut; forward again."""

        def _reset() -> None:
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()
            self.cut_now = False

        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self._loop).result(5)
        self._loop.call_soon_threadsafe(_reset)

    def stop(self) -> None:
        def _close() -> None:
            for w in list(self._writers):
                w.transport.abort()
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(_close)
            self._thread.join(5)
