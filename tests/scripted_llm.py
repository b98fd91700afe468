"""Scripted OpenAI-compatible HTTP server used by tests and benchmarks.

Stands in for a real LLM provider. Standard library only, so it starts in
milliseconds and handles hundreds of concurrent keep-alive connections.

Requests are matched to a *key*: any scripted/defaulted key string that occurs
in the content of the request's first message (tests use the agent id, which
appears in the system prompt). Unmatched or unscripted requests get the default
behaviour: a single ``send_message`` tool call echoing the last user message.

Fault injection (chaos tests): ``set_faults({"timeout": 0.02, "429": 0.02, ...}, seed)``
or ``POST /_faults {"rates": {...}, "seed": N}`` makes each chat request, with the
given probabilities, fail in one of these ways (see FAULT_KINDS) instead of
answering: ``timeout`` (sleep past the client's timeout, then answer), ``429``
(with Retry-After), ``500``, ``malformed`` (a send_message call whose arguments
are truncated JSON), ``empty`` (200 with no choices) or ``slow`` (sleep ``slow_s``,
default 30 s, then answer normally: a slow tail below the client's timeout; the
last user messages of the slowed requests are listed in ``faults()["slow_messages"]``).
Injected faults never
consume a scripted response. ``GET /_faults`` shows the rates and counts.

Run standalone: ``python tests/scripted_llm.py --port P [--latency-ms N] [--faults JSON]``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

try:  # tests/ is on sys.path when run as a script or imported by the tests
    import scripted_batches
except ImportError:  # loaded from its file by path (benchmarks)
    sys.path.append(__import__("os").path.dirname(__file__))
    import scripted_batches

DEFAULT_DIM = 384
FAULT_KINDS = ("timeout", "429", "500", "malformed", "empty", "slow")


def _text_of(content) -> str:
    """Flatten OpenAI message content (str or list of parts) to a string."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def embed(text: str, dim: int = DEFAULT_DIM) -> list[float]:
    """Deterministic hashed bag-of-words embedding, L2-normalised."""
    vec = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        h = hashlib.blake2b(word.encode(), digest_size=8).digest()
        n = int.from_bytes(h, "big")
        vec[n % dim] += 1.0 if (n >> 63) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vec))
    return [x / norm for x in vec] if norm else vec


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        """Stay quiet when a client gave up (e.g. timeout) before we answered."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class ScriptedLLM:
    """Scripted chat-completions / embeddings server. See module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency_ms: int = 0):
        self.host, self.port, self.latency_ms = host, port, latency_ms
        self._lock = threading.Lock()
        self._scripts: dict[str, list[dict]] = {}
        self._defaults: dict[str, dict] = {}
        self._requests: list[tuple[str | None, dict]] = []
        self._emb_requests: list[dict] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._fault_rates: dict[str, float] = {}
        self._fault_counts: dict[str, int] = {}
        self._fault_rng = random.Random()
        self.fault_timeout_s = 2.0
        self.fault_retry_after = 1
        self.batch_api = scripted_batches.BatchAPI(self._chat)  # Files + Batches endpoints
        self.fault_slow_s = 30.0
        self._slow_messages: list[str] = []

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "ScriptedLLM":
        """Bind and serve in a background daemon thread."""
        self._httpd = _Server((self.host, self.port), _make_handler(self))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- scripting ---------------------------------------------------------
    def script(self, key: str, *responses: dict) -> None:
        """Append scripted responses (FIFO) for conversations matching ``key``."""
        with self._lock:
            q = self._scripts.setdefault(key, [])
            for r in responses:
                r = dict(r)
                r["_left"] = int(r.pop("repeat", 1))
                q.append(r)

    def set_default(self, key: str, response: dict | None) -> None:
        """Response used for ``key`` whenever its script is empty (None clears)."""
        with self._lock:
            if response is None:
                self._defaults.pop(key, None)
            else:
                self._defaults[key] = dict(response)

    def requests(self, key: str | None = None) -> list[dict]:
        """Recorded chat request bodies: all, or those matched to ``key`` or whose
        first message contains it (scripted or not)."""
        with self._lock:
            return [b for k, b in self._requests if key is None or k == key or key in _first_text(b)]

    def embedding_requests(self) -> list[dict]:
        with self._lock:
            return list(self._emb_requests)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._defaults.clear()
            self._requests.clear()
            self._emb_requests.clear()
            self._fault_rates = {}
            self._fault_counts = {}
        self.batch_api.reset()

    # -- provider batches (tests/scripted_batches.py) -------------------------
    def set_batch_knobs(self, **knobs) -> None:
        """Knobs of the batch API (complete_s, fail_next_lines, drop_next_lines, expire_next_batches,
        expire_done, fail_next_batches, duplicate_output); unknown names raise ValueError."""
        unknown = set(knobs) - set(self.batch_api.knobs)
        if unknown:
            raise ValueError(f"unknown batch knob(s) {sorted(unknown)}")
        self.batch_api.knobs.update(knobs)

    def on_batch(self, event: str, fn) -> None:
        """Run fn(id) at "create" (before the create is answered) or "content" (before a file is served)."""
        self.batch_api.hooks[event] = fn

    def batch_stats(self) -> dict:
        return self.batch_api.stats()

    # -- fault injection ---------------------------------------------------
    def set_faults(self, rates: dict | None, seed: int | None = None, *,
                   timeout_s: float | None = None, retry_after: int | float | None = None,
                   slow_s: float | None = None) -> None:
        """Per chat request, inject fault ``kind`` with probability ``rates[kind]``.

        kinds (FAULT_KINDS): "timeout" sleeps ``timeout_s`` (default 2 s: past the
        client's timeout) before answering normally; "429" answers 429 with
        ``Retry-After: retry_after`` (default 1); "500" answers 500; "malformed"
        answers a send_message tool call with truncated JSON arguments; "empty"
        answers 200 with ``choices: []``; "slow" sleeps ``slow_s`` (default 30 s) and
        answers normally. Rates add up (their sum must be <= 1).
        ``None`` or ``{}`` turns faults off. Counts start again at zero.
        """
        rates = {str(k): float(v) for k, v in (rates or {}).items() if float(v) > 0}
        unknown = set(rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; known: {FAULT_KINDS}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        with self._lock:
            self._fault_rates = rates
            self._fault_counts = {k: 0 for k in rates}
            self._fault_rng = random.Random(seed)
            self._slow_messages = []
            if slow_s is not None:
                self.fault_slow_s = float(slow_s)
            if timeout_s is not None:
                self.fault_timeout_s = float(timeout_s)
            if retry_after is not None:
                self.fault_retry_after = retry_after

    def faults(self) -> dict:
        """The fault rates in force and how many of each were injected so far."""
        with self._lock:
            return {"rates": dict(self._fault_rates), "counts": dict(self._fault_counts),
                    "timeout_s": self.fault_timeout_s, "retry_after": self.fault_retry_after,
                    "slow_s": self.fault_slow_s, "slow_messages": list(self._slow_messages)}

    def _draw_fault(self) -> str | None:
        with self._lock:
            if not self._fault_rates:
                return None
            x = self._fault_rng.random()
            for kind in FAULT_KINDS:
                x -= self._fault_rates.get(kind, 0.0)
                if x < 0:
                    self._fault_counts[kind] = self._fault_counts.get(kind, 0) + 1
                    return kind
            return None

    def _record(self, body: dict) -> None:
        with self._lock:
            self._requests.append((self._match(body), body))

    def _fault(self, kind: str, body: dict) -> tuple[int, dict | bytes, dict] | None:
        """The answer for an injected fault (None: answer normally, after a timeout's sleep)."""
        if kind == "timeout":
            time.sleep(self.fault_timeout_s)
            return None  # the normal answer records the request
        if kind == "slow":
            with self._lock:
                self._slow_messages.append(_last_user_message(body))
            time.sleep(self.fault_slow_s)
            return None
        self._record(body)
        if kind == "429":
            return 429, _error("injected rate limit", "rate_limit_exceeded", 429), {
                "Retry-After": str(self.fault_retry_after)}
        if kind == "500":
            return 500, _error("injected server error", "server_error", 500), {}
        model = body.get("model", "scripted")
        if kind == "empty":
            return 200, self._envelope(model, [], body, ""), {}
        # malformed: the arguments JSON is cut off mid-string
        args = json.dumps({"message": "echo: " + _last_user_message(body), "request_heartbeat": False})
        message = {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_" + uuid.uuid4().hex[:24], "type": "function",
            "function": {"name": "send_message", "arguments": args[: max(1, len(args) // 2)]}}]}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        return 200, self._envelope(model, [choice], body, json.dumps(message)), {}

    # -- request handling --------------------------------------------------
    def _match(self, body: dict) -> str | None:
        msgs = body.get("messages") or []
        first = _text_of(msgs[0].get("content")) if msgs and isinstance(msgs[0], dict) else ""
        for key in list(self._scripts) + list(self._defaults):
            if key in first:
                return key
        return None

    def _next_response(self, body: dict) -> dict | None:
        """Record the request and pop the response to use (None = echo)."""
        with self._lock:
            key = self._match(body)
            self._requests.append((key, body))
            q = self._scripts.get(key) if key is not None else None
            if q:
                resp = q[0]
                resp["_left"] -= 1
                if resp["_left"] <= 0:
                    q.pop(0)
                return resp
            return self._defaults.get(key) if key is not None else None

    def _chat(self, body: dict) -> tuple[int, dict | bytes, dict]:
        """Build (status, payload, headers) for a chat completions request."""
        kind = self._draw_fault()
        if kind is not None:
            injected = self._fault(kind, body)
            if injected is not None:
                return injected
        resp = self._next_response(body) or {}
        if resp.get("sleep_s"):
            time.sleep(float(resp["sleep_s"]))
        if "status" in resp and int(resp["status"]) != 200:
            status = int(resp["status"])
            headers = {}
            if resp.get("retry_after") is not None:
                headers["Retry-After"] = str(resp["retry_after"])
            etype = {429: "rate_limit_exceeded", 500: "server_error",
                     503: "service_unavailable"}.get(status, "api_error")
            return status, _error(resp.get("message", f"scripted error {status}"),
                                  etype, status), headers
        if resp.get("garbage"):
            return 200, b"<html>this is not json {{{", {}
        model = body.get("model", "scripted")
        if resp.get("empty_choices"):
            return 200, self._envelope(model, [], body, ""), {}
        content = resp.get("content")
        calls: list[dict] = []
        if resp.get("tool_calls"):
            calls = list(resp["tool_calls"])
        elif resp.get("tool") and not (resp.get("echo") and resp["tool"] == "send_message"):
            calls = [{"name": resp["tool"], "args": resp.get("args", {}),
                      "raw_args": resp.get("raw_args"), "id": resp.get("call_id")}]
        elif "content" not in resp or resp.get("echo"):
            calls = [{"name": "send_message", "args": {
                "message": "echo: " + _last_user_message(body), "request_heartbeat": False}}]
        tool_calls = [{
            "id": c.get("id") or "call_" + uuid.uuid4().hex[:24], "type": "function",
            "function": {"name": c["name"],
                         "arguments": c["raw_args"] if c.get("raw_args") is not None
                         else json.dumps(c.get("args", {}))},
        } for c in calls]
        message = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        choice = {"index": 0, "message": message,
                  "finish_reason": "tool_calls" if tool_calls else "stop"}
        return 200, self._envelope(model, [choice], body, json.dumps(message)), {}

    @staticmethod
    def _envelope(model: str, choices: list, body: dict, completion: str) -> dict:
        pt = len(json.dumps(body.get("messages", []))) // 4
        ct = len(completion) // 4
        return {"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion",
                "created": int(time.time()), "model": model, "choices": choices,
                "usage": {"prompt_tokens": pt, "completion_tokens": ct,
                          "total_tokens": pt + ct}}

    def _embeddings(self, body: dict) -> dict:
        with self._lock:
            self._emb_requests.append(body)
        inputs = body.get("input", "")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        dim = int(body.get("dimensions") or DEFAULT_DIM)
        data = [{"object": "embedding", "index": i, "embedding": embed(str(t), dim)}
                for i, t in enumerate(inputs)]
        toks = sum(len(str(t)) for t in inputs) // 4
        return {"object": "list", "data": data, "model": body.get("model", "scripted"),
                "usage": {"prompt_tokens": toks, "total_tokens": toks}}


def _error(message: str, etype: str, status: int) -> dict:
    """OpenAI-style error body."""
    return {"error": {"message": message, "type": etype, "code": str(status), "param": None}}


def _first_text(body: dict) -> str:
    msgs = body.get("messages") or []
    return _text_of(msgs[0].get("content")) if msgs and isinstance(msgs[0], dict) else ""


def _last_user_message(body: dict) -> str:
    """`message` of the last user event that is not a heartbeat or system alert
    (so a chain answers the message that started it), else the raw text."""
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            raw = _text_of(m.get("content"))
            try:
                obj = json.loads(raw)
            except (ValueError, TypeError):
                return raw
            if isinstance(obj, dict) and obj.get("type") in ("heartbeat", "system_alert"):
                continue
            if isinstance(obj, dict) and "message" in obj:
                return str(obj["message"])
            return raw
    return ""


ADMIN = {  # HTTP admin endpoints -> same state as the Python methods
    "/_script": lambda llm, b: llm.script(b["key"], *b.get("responses", [])),
    "/_default": lambda llm, b: llm.set_default(b["key"], b.get("response")),
    "/_latency": lambda llm, b: setattr(llm, "latency_ms", int(b.get("latency_ms", 0))),
    "/_reset": lambda llm, b: llm.reset(),
    "/_batch_knobs": lambda llm, b: llm.set_batch_knobs(**b),
    "/_faults": lambda llm, b: llm.set_faults(b.get("rates"), b.get("seed"),
                                              timeout_s=b.get("timeout_s"),
                                              retry_after=b.get("retry_after"),
                                              slow_s=b.get("slow_s")),
}


def _make_handler(llm: ScriptedLLM):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle on, a keep-alive client
        # waits for its delayed ACK (~40 ms) before the body arrives.
        disable_nagle_algorithm = True

        def log_message(self, *args):  # keep test output quiet
            pass

        def _send(self, status: int, payload, headers: dict | None = None, ctype=None):
            if isinstance(payload, (bytes, str)):
                data = payload.encode() if isinstance(payload, str) else payload
                ctype = ctype or "text/plain"
            else:
                data, ctype = json.dumps(payload).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            return json.loads(raw) if raw.strip() else {}

        def _latency(self):
            if llm.latency_ms:
                time.sleep(llm.latency_ms / 1000.0)

        def do_GET(self):
            u = urlparse(self.path)
            if u.path == "/health":
                self._send(200, "ok")
            elif u.path in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "scripted"}
                    for m in ("scripted", "scripted-embedding")]})
            elif u.path == "/_requests":
                key = parse_qs(u.query).get("key", [None])[0]
                self._send(200, llm.requests(key))
            elif u.path == "/_faults":
                self._send(200, llm.faults())
            elif u.path == "/_embedding_requests":
                self._send(200, {"count": len(llm.embedding_requests())})
            elif u.path == "/_batch_stats":
                self._send(200, llm.batch_stats())
            elif (routed := self._batch_route("GET", u.path, b"")) is not None:
                self._send(*routed)
            else:
                self._send(404, _error("not found", "invalid_request_error", 404))

        def _batch_route(self, method: str, path: str, raw: bytes):
            return scripted_batches.route(llm.batch_api, method, path, self.headers, raw)

        def do_POST(self):
            path = urlparse(self.path).path
            if path.startswith(("/v1/files", "/v1/batches", "/files", "/batches")):
                n = int(self.headers.get("Content-Length") or 0)
                return self._send(*self._batch_route("POST", path, self.rfile.read(n) if n else b""))
            try:
                body = self._body()
            except ValueError:
                return self._send(400, _error("invalid JSON body", "invalid_request_error", 400))
            if path in ("/v1/chat/completions", "/chat/completions"):
                self._latency()
                self._send(*llm._chat(body))
            elif path in ("/v1/embeddings", "/embeddings"):
                self._latency()
                self._send(200, llm._embeddings(body))
            elif path in ADMIN:
                try:
                    ADMIN[path](llm, body)
                except (ValueError, KeyError, TypeError) as exc:
                    return self._send(400, _error(str(exc), "invalid_request_error", 400))
                self._send(200, {"ok": True})
            else:
                self._send(404, _error("not found", "invalid_request_error", 404))

    return Handler


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-ms", type=int, default=0)
    ap.add_argument("--faults", default=None,
                    help='fault rates as JSON, e.g. \'{"500": 0.05, "timeout": 0.02}\'')
    ap.add_argument("--fault-seed", type=int, default=None)
    a = ap.parse_args(argv)
    llm = ScriptedLLM(a.host, a.port, a.latency_ms)
    if a.faults:
        llm.set_faults(json.loads(a.faults), a.fault_seed)
    llm.start()
    print(f"READY http://{llm.host}:{llm.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        llm.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
