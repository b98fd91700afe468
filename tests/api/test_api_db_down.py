"""`memq serve` with its database gone and back: 503 with Retry-After (nothing half-done), then
the event-loop pool reconnects (given / when / then). The database "goes away" behind a TCP
relay the test controls, so the shared Postgres keeps running."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from urllib.parse import urlsplit

import httpx
import pytest

from api_server import ServeProcess


class Relay:
    """A TCP relay to host:port; down() cuts every relayed connection and refuses new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.is_down = False
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.is_down:
                client.close()
                continue
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def down(self) -> None:
        self.is_down = True
        with self._lock:
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._open.clear()

    def up(self) -> None:
        self.is_down = False

    def close(self) -> None:
        self.down()
        self.server.close()


@pytest.fixture
def relayed_server(serve_env: dict[str, str], worker, tmp_path) -> Iterator[tuple[ServeProcess, Relay]]:
    url = urlsplit(serve_env["MEMQ_DATABASE_URL"])
    relay = Relay(url.hostname or "127.0.0.1", url.port or 5432)
    relayed = url._replace(netloc=url.netloc.replace(f"{url.hostname}:{url.port}", f"127.0.0.1:{relay.port}"))
    env = {**serve_env, "MEMQ_DATABASE_URL": relayed.geturl(), "MEMQ_API_KEY_CACHE_S": "60"}
    proc = ServeProcess(env, tmp_path / "serve.log").wait_up()
    yield proc, relay
    proc.stop()
    relay.close()


def _send(http: httpx.Client, aid: str, text: str) -> httpx.Response:
    return http.post(f"/v1/agents/{aid}/messages", json={"messages": [{"role": "user", "content": text}]})


def test_with_the_database_gone_sends_get_503_and_work_again_once_it_is_back(relayed_server, key: str):
    server, relay = relayed_server
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        # given a serving process that has answered sends (its pools hold connections)
        aid = http.post("/v1/agents/", json={"name": "db-down"}).json()["id"]
        for i in range(3):
            assert _send(http, aid, f"before {i}").status_code == 200
        runs_before = len(http.get("/v1/runs/", params={"agent_id": aid}).json())
        # when the database goes away
        relay.down()
        # then sends answer 503 with Retry-After and a JSON error, and /readyz fails
        for i in range(3):
            r = _send(http, aid, f"during {i}")
            assert r.status_code == 503 and r.headers.get("retry-after"), r.text
            assert r.json()["error"] == "unavailable"
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 503
        # and once it is back, sends work again (the pools reconnect), and nothing was queued meanwhile
        relay.up()
        deadline = time.monotonic() + 20
        while (r := _send(http, aid, "after")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.2)
        assert r.json()["stop_reason"]["stop_reason"] == "end_turn"
        # (the repository's pool finds its dead connections on first use: that request is a 503 too)
        while (listed := http.get("/v1/runs/", params={"agent_id": aid})).status_code != 200:
            assert listed.status_code == 503 and time.monotonic() < deadline, listed.text
            time.sleep(0.2)
        runs = listed.json()
        assert len(runs) == runs_before + 1, [x["status"] for x in runs]
    assert "unexpected error" not in server.log()  # no 500 on the way


def _get_twice_on_one_connection(server: ServeProcess, key: str, path: str) -> list[tuple[int, dict, str]]:
    """Two GETs on one keep-alive connection: (status, headers, body) of each; the second raises
    if the server closed the connection after the first."""
    conn = HTTPConnection("127.0.0.1", server.port, timeout=30)
    answers = []
    try:
        conn.connect()
        sock = conn.sock
        for _ in range(2):
            conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
            r = conn.getresponse()
            answers.append((r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()))
            assert conn.sock is sock, "the server closed the connection"
    finally:
        conn.close()
    return answers


def test_with_the_database_gone_a_routed_request_answers_503_json_and_keeps_the_connection(relayed_server, key: str):
    server, relay = relayed_server
    # given a serving process that has listed agents (the repository's pool holds connections)
    assert httpx.get(f"{server.url}/v1/agents/", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    # when the database goes away (its connections cut, new ones refused)
    relay.down()
    # then a routed request (the router and its handlers, not the send lane) answers 503 with
    # Retry-After and a JSON error, twice on one connection: the server does not drop it
    for status, headers, body in _get_twice_on_one_connection(server, key, "/v1/agents/"):
        assert status == 503 and headers.get("retry-after"), (status, body)
        assert json.loads(body)["error"] == "unavailable", body
    # and logs no traceback (an expected failure, not a fault of memq)
    assert "Traceback" not in server.log() and "Exception in ASGI application" not in server.log()
    relay.up()
