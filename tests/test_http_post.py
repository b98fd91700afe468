"""The direct LLM route's HTTP client (memq/http_post.py): one kept-alive connection per
thread, an idle connection the server closed is reopened without an error, timeouts and
refused connections are told apart, and a proxy in the environment sends the call to httpx."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from memq.http_post import KeepAlivePoster, PostConnectionError, PostTimeout, uses_proxy


class _Server:
    """A loopback HTTP/1.1 server that answers JSON, counts connections, and can sleep or
    close a connection after each answer."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.sleep_s = 0.0
        self.close_after_answer = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                outer.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(body)
                time.sleep(outer.sleep_s)
                out = json.dumps({"echo": json.loads(body)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                self.wfile.flush()
                if outer.close_after_answer:  # as a keep-alive timeout does, without telling
                    self.close_connection = True

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda *_: None  # a client that gave up (the timeout test) is no error here
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/chat/completions"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.stop()


def _poster(timeout_s: float = 5.0) -> KeepAlivePoster:
    return KeepAlivePoster(timeout_s=timeout_s, connect_timeout_s=2.0, ssl_context=None)


def test_calls_from_one_thread_share_one_connection(server):
    poster = _poster()
    answers = [poster.post(server.url, json.dumps({"n": i}).encode(), {"Content-Type": "application/json"})
               for i in range(5)]
    assert [a.json()["echo"]["n"] for a in answers] == [0, 1, 2, 3, 4]
    assert all(a.status_code == 200 for a in answers)
    assert server.connections == 1
    poster.close()


def test_a_connection_the_server_closed_while_idle_is_reopened_and_the_call_sent_once(server):
    # given a server that closes each connection after its answer (without Connection: close)
    server.close_after_answer = True
    poster = _poster()
    assert poster.post(server.url, b'{"n": 1}', {}).json() == {"echo": {"n": 1}}
    time.sleep(0.2)  # the close reaches this side
    # when the next call goes out on the dead kept-alive connection
    answer = poster.post(server.url, b'{"n": 2}', {})
    # then it is answered, on a new connection, and the server saw each call once
    assert answer.json() == {"echo": {"n": 2}}
    assert server.requests == [b'{"n": 1}', b'{"n": 2}']
    assert server.connections == 2
    poster.close()


def test_no_answer_within_the_timeout_is_a_timeout(server):
    server.sleep_s = 1.0
    with pytest.raises(PostTimeout, match="within 0.3 s"):
        _poster(timeout_s=0.3).post(server.url, b"{}", {})


def test_a_refused_connection_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(PostConnectionError, match="ConnectionRefused"):
        _poster().post(f"http://127.0.0.1:{port}/v1/chat/completions", b"{}", {})


def test_a_proxy_in_the_environment_applies_unless_no_proxy_names_the_host(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not uses_proxy("https://api.example.com/v1/chat/completions")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert uses_proxy("https://api.example.com/v1/chat/completions")
    monkeypatch.setenv("NO_PROXY", "api.example.com")
    assert not uses_proxy("https://api.example.com/v1/chat/completions")
