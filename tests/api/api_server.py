"""A `memq serve` subprocess, the `memq key` CLI, and a callback receiver, for the API tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from stack import stop_process_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`memq serve` on a free port, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")
        cmd = [sys.executable, "-m", "memq.cli.main", "serve", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_up(self, timeout_s: float = 60.0) -> "ServeProcess":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memq serve exited:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"memq serve not up:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process_group(self.proc)
        self._log.close()


def log_line(server: ServeProcess, needle: str, timeout_s: float = 5.0) -> str:
    """The server's log line holding needle (written just after the response is sent)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [line for line in server.log().splitlines() if needle in line]
        if found or time.monotonic() > deadline:
            assert found, f"no log line with {needle}"
            return found[0]
        time.sleep(0.05)


def memq_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memq.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def new_key(env: dict[str, str], tenant: str) -> dict:
    out = memq_cli(env, "key", "create", "--tenant", tenant, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def use_then_revoke(server_url: str, env: dict[str, str], tenant: str) -> dict:
    """A new key of `tenant` (`memq key create`'s document), used once (so the server has it
    cached), then revoked by its prefix."""
    made = new_key(env, tenant)
    headers = {"Authorization": f"Bearer {made['key']}"}
    assert httpx.get(f"{server_url}/v1/agents/", headers=headers).status_code == 200
    out = memq_cli(env, "key", "revoke", made["prefix"], "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["revoked_at"], out.stderr
    return made


class Receiver:
    """A tiny HTTP receiver: records every POST; a path answers its scripted statuses, then 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append((self.path, dict(self.headers), body))
                queue = receiver.statuses.get(self.path) or []
                self.send_response(queue.pop(0) if queue else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[tuple[str, dict[str, str], bytes]]:
        return [p for p in self.posts if p[0] == path]


def signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, as README tells it: HMAC-SHA256(secret, "<t>." + raw body) in v1."""
    fields = dict(part.split("=", 1) for part in headers["X-Memq-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) < 300
