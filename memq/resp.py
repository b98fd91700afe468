"""RESP, Redis's wire protocol, spoken directly for the few commands memq sends on hot
paths (a doorbell's LPUSH, a run event's PUBLISH): one kept-open socket, one write per
call, one reply line read per command. It costs about a tenth of redis-py's CPU per
command and needs no import of it (~0.1 s). Only plain ``redis://host:port/db`` URLs
(user and password allowed) are spoken to this way; callers keep redis-py for the rest
(TLS, query options, a socket path).
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import SplitResult, unquote


def is_plain(parts: SplitResult) -> bool:
    """A ``redis://host:port/db`` URL (user and password allowed) memq speaks RESP to itself."""
    return parts.scheme == "redis" and not parts.query and bool(parts.hostname)


def command(*args: str) -> bytes:
    """One Redis command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def handshake(parts: SplitResult) -> list[bytes]:
    """AUTH (when the URL has a password) and SELECT of the URL's database."""
    commands = []
    if parts.password is not None:
        user = unquote(parts.username) if parts.username else None
        commands.append(command("AUTH", *([user] if user else []), unquote(parts.password)))
    return commands + [command("SELECT", (parts.path or "/").strip("/") or "0")]


class PlainResp:
    """One connection for commands whose replies are one line (status, integer, error).

    ``call(commands)`` sends them in one write and reads their replies; an error reply
    raises ConnectionError naming it. A dropped connection is retried once on a new one
    (the commands memq sends this way are safe to repeat: a doubled doorbell finds the
    lease taken, a doubled run event is ignored by its waiters). Not thread-safe: one per
    thread.
    """

    def __init__(self, parts: SplitResult, timeout_s: float) -> None:
        self._parts = parts
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._reader: Any = None

    def call(self, commands: list[bytes]) -> None:
        try:
            self._send(commands)
        except OSError:  # a dropped connection (or a timeout): once more on a new one
            self.close()
            self._send(commands)

    def _send(self, commands: list[bytes]) -> None:
        if self._sock is None:
            self._sock = socket.create_connection((self._parts.hostname, self._parts.port or 6379),
                                                  timeout=self.timeout_s)
            self._reader = self._sock.makefile("rb")
            commands = handshake(self._parts) + commands
        try:
            self._sock.sendall(b"".join(commands))
            for _ in commands:
                line = self._reader.readline()
                if not line:
                    raise ConnectionResetError("redis closed the connection")
                if line.startswith(b"-"):
                    raise ConnectionError(f"redis answered {line.decode(errors='replace').strip()}")
        except BaseException:
            self.close()  # replies not read would answer the next call
            raise

    def close(self) -> None:
        for part in (self._reader, self._sock):
            if part is not None:
                try:
                    part.close()
                except OSError:
                    pass
        self._reader = self._sock = None
