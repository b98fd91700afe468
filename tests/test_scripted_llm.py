"""Tests for tests/scripted_llm.py, exercised through litellm as production calls it.

litellm 1.81.16 behaviours observed against this server (both "hosted_vllm/" and
"openai/" model prefixes unless noted):
  * HTTP 429 -> litellm.RateLimitError (status_code 429). ``exc.response.headers`` is
    EMPTY (litellm builds a synthetic httpx.Response). The real headers are in
    ``exc.litellm_response_headers``: a plain dict with lower-cased keys for
    hosted_vllm/, an httpx.Headers for openai/ -- so
    ``exc.litellm_response_headers.get("retry-after")`` works for both (string, e.g. "7").
    ``litellm.utils._get_retry_after_from_exception_header(headers)`` parses it to int.
  * HTTP 500 -> litellm.InternalServerError; HTTP 503 -> litellm.ServiceUnavailableError.
  * Client timeout -> litellm.Timeout (status_code 408).
  * 200 with "choices": [] -> NO exception; a ModelResponse with ``choices == []``.
  * 200 with a non-JSON body -> litellm.APIError for hosted_vllm/, but
    litellm.InternalServerError for openai/ (both subclass openai.APIError).
  * Retries: hosted_vllm/ sends exactly one request by default; openai/ without
    num_retries sends 3 (openai SDK max_retries=2). ``num_retries=0`` -> 1 request for both.
  * Embeddings: both "hosted_vllm/<m>" and "openai/<m>" work with api_base.
"""
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import httpx  # noqa: E402
import litellm  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scripted_llm import ScriptedLLM, embed  # noqa: E402

# litellm's own Message/Choices models emit harmless Pydantic serializer warnings
# on every non-streamed response (independent of this server); silence them here.
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")

AGENT = "agent-7f3a"
SEND_MESSAGE_TOOL = {
    "type": "function",
    "function": {
        "name": "send_message",
        "description": "Send a message to the user.",
        "parameters": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "request_heartbeat": {"type": "boolean"},
            },
            "required": ["message", "request_heartbeat"],
        },
    },
}


def _messages(agent=AGENT, text="hi"):
    return [
        {"role": "system", "content": f"You are agent {agent}. Persona: helpful."},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "send_message",
                         "arguments": '{"message": "hello", "request_heartbeat": false}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "OK"}'},
        {"role": "user", "content": json.dumps(
            {"type": "user_message", "message": text, "time": "2025-01-01 10:00:00 AM"})},
    ]


@pytest.fixture(scope="module")
def server():
    s = ScriptedLLM().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _clean(server):
    server.reset()
    server.latency_ms = 0
    yield


def complete(server, model="hosted_vllm/scripted", agent=AGENT, text="hi", **kw):
    kw.setdefault("timeout", 5)
    kw.setdefault("num_retries", 0)
    return litellm.completion(model=model, api_base=server.url, api_key="test-key",
                              messages=_messages(agent, text), tools=[SEND_MESSAGE_TOOL], **kw)


def _call(resp, i=0):
    tc = resp.choices[0].message.tool_calls[i]
    return tc.function.name, json.loads(tc.function.arguments)


# --------------------------------------------------------------- via litellm
@pytest.mark.parametrize("model", ["hosted_vllm/scripted", "openai/scripted"])
def test_default_echo(server, model):
    resp = complete(server, model=model, text="what's up")
    assert _call(resp) == ("send_message", {"message": "echo: what's up",
                                            "request_heartbeat": False})
    assert resp.choices[0].finish_reason == "tool_calls"
    assert resp.choices[0].message.tool_calls[0].id.startswith("call_")
    assert resp.usage.prompt_tokens > 0
    body = server.requests()[-1]
    assert body["model"] == "scripted"
    assert body["tools"][0]["function"]["name"] == "send_message"


@pytest.mark.parametrize("model", ["hosted_vllm/scripted", "openai/scripted"])
def test_scripted_tool_call_with_monologue(server, model):
    server.script(AGENT, {"tool": "core_memory_append",
                          "args": {"label": "human", "content": "likes tea",
                                   "request_heartbeat": True},
                          "content": "I should remember this."})
    resp = complete(server, model=model)
    assert _call(resp) == ("core_memory_append", {"label": "human", "content": "likes tea",
                                                  "request_heartbeat": True})
    assert resp.choices[0].message.content == "I should remember this."
    # script consumed -> default echo again
    assert _call(complete(server, model=model))[0] == "send_message"


def test_multiple_tool_calls_and_plain_content(server):
    server.script(AGENT,
                  {"tool_calls": [{"name": "a", "args": {"x": 1}},
                                  {"name": "b", "raw_args": "{bad"}], "content": "two"},
                  {"content": "just text"})
    resp = complete(server)
    assert _call(resp, 0) == ("a", {"x": 1})
    assert resp.choices[0].message.tool_calls[1].function.arguments == "{bad"
    resp = complete(server)
    assert resp.choices[0].message.content == "just text"
    assert not resp.choices[0].message.tool_calls
    assert resp.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["hosted_vllm/scripted", "openai/scripted"])
def test_malformed_raw_args_verbatim(server, model):
    raw = '{"message": "unterminated'
    server.script(AGENT, {"tool": "send_message", "raw_args": raw})
    resp = complete(server, model=model)
    assert resp.choices[0].message.tool_calls[0].function.arguments == raw


def test_500_then_success(server):
    server.script(AGENT, {"status": 500})
    with pytest.raises(litellm.InternalServerError):
        complete(server)
    assert _call(complete(server))[1]["message"] == "echo: hi"
    assert len(server.requests(AGENT)) == 2


def test_503(server):
    server.script(AGENT, {"status": 503})
    with pytest.raises(litellm.ServiceUnavailableError):
        complete(server)


@pytest.mark.parametrize("model", ["hosted_vllm/scripted", "openai/scripted"])
def test_429_retry_after(server, model):
    server.script(AGENT, {"status": 429, "retry_after": 7})
    with pytest.raises(litellm.RateLimitError) as ei:
        complete(server, model=model)
    exc = ei.value
    assert exc.status_code == 429
    assert exc.litellm_response_headers.get("retry-after") == "7"
    from litellm.utils import _get_retry_after_from_exception_header
    assert _get_retry_after_from_exception_header(exc.litellm_response_headers) == 7


@pytest.mark.parametrize("model", ["hosted_vllm/scripted", "openai/scripted"])
def test_sleep_triggers_timeout(server, model):
    server.script(AGENT, {"sleep_s": 2})
    t0 = time.monotonic()
    with pytest.raises(litellm.Timeout):
        complete(server, model=model, timeout=0.5)
    assert time.monotonic() - t0 < 1.8


def test_sleep_then_answer(server):
    server.script(AGENT, {"sleep_s": 0.2, "tool": "x", "args": {}})
    t0 = time.monotonic()
    assert _call(complete(server))[0] == "x"
    assert time.monotonic() - t0 >= 0.2


@pytest.mark.parametrize("model", ["hosted_vllm/scripted", "openai/scripted"])
def test_empty_choices(server, model):
    server.script(AGENT, {"empty_choices": True})
    resp = complete(server, model=model)  # litellm does not raise
    assert resp.choices == []


@pytest.mark.parametrize("model,exc", [("hosted_vllm/scripted", litellm.APIError),
                                       ("openai/scripted", litellm.InternalServerError)])
def test_garbage_body(server, model, exc):
    server.script(AGENT, {"garbage": True})
    with pytest.raises(exc):
        complete(server, model=model)


def test_repeat_echo_and_default_override(server):
    server.script(AGENT, {"tool": "t", "args": {"n": 1}, "repeat": 2},
                  {"tool": "send_message", "echo": True})
    assert _call(complete(server))[0] == "t"
    assert _call(complete(server))[0] == "t"
    assert _call(complete(server, text="yo"))[1]["message"] == "echo: yo"
    server.set_default(AGENT, {"tool": "send_message",
                               "args": {"message": "more", "request_heartbeat": True}})
    for _ in range(3):
        assert _call(complete(server))[1]["request_heartbeat"] is True
    server.script(AGENT, {"content": "scripted wins over default"})
    assert complete(server).choices[0].message.content == "scripted wins over default"
    assert _call(complete(server))[1]["message"] == "more"


def test_key_matching_and_recording(server):
    server.script("agent-A", {"tool": "for_a", "args": {}})
    server.script("agent-B", {"tool": "for_b", "args": {}})
    assert _call(complete(server, agent="agent-B"))[0] == "for_b"
    assert _call(complete(server, agent="agent-A"))[0] == "for_a"
    assert _call(complete(server, agent="agent-C"))[0] == "send_message"
    assert len(server.requests()) == 3
    assert len(server.requests("agent-A")) == 1
    assert "agent-B" in server.requests("agent-B")[0]["messages"][0]["content"]


def test_non_json_user_content_echoed_raw(server):
    with httpx.Client() as c:
        r = c.post(server.url + "/chat/completions", json={
            "model": "m", "messages": [{"role": "system", "content": "s"},
                                       {"role": "user", "content": "plain text"}]})
    args = json.loads(r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert args["message"] == "echo: plain text"


# ---------------------------------------------------------------- embeddings
@pytest.mark.parametrize("model", ["hosted_vllm/scripted-embedding", "openai/scripted-embedding"])
def test_embeddings_via_litellm(server, model):
    resp = litellm.embedding(model=model, api_base=server.url, api_key="test-key",
                             input=["the cat sat on the mat", "the cat sat", "quantum chromodynamics"])
    vecs = [d["embedding"] for d in resp.data]
    assert [len(v) for v in vecs] == [384] * 3
    assert abs(math.sqrt(sum(x * x for x in vecs[0])) - 1) < 1e-6
    cos = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert cos(vecs[0], vecs[1]) > 0.6 > cos(vecs[0], vecs[2])
    assert len(server.embedding_requests()) == 1
    assert server.requests() == []


def test_embedding_dimensions_and_determinism(server):
    with httpx.Client() as c:
        r = c.post(server.url + "/embeddings",
                   json={"model": "e", "input": "Hello world", "dimensions": 64})
    assert len(r.json()["data"][0]["embedding"]) == 64
    assert r.json()["data"][0]["embedding"] == embed("hello WORLD", 64)


# ------------------------------------------------------------------ HTTP admin
def test_http_admin_endpoints(server):
    base = server.url.rsplit("/v1", 1)[0]
    with httpx.Client(base_url=base) as c:
        assert c.get("/health").text == "ok"
        assert c.get("/v1/models").json()["data"]
        c.post("/_script", json={"key": AGENT, "responses": [{"tool": "via_http", "args": {}}]})
        assert _call(complete(server))[0] == "via_http"
        c.post("/_default", json={"key": AGENT, "response": {"content": "dflt"}})
        assert complete(server).choices[0].message.content == "dflt"
        got = c.get("/_requests", params={"key": AGENT}).json()
        assert len(got) == 2 and got[0]["model"] == "scripted"
        assert c.get("/_requests").json() == server.requests()
        c.post("/_latency", json={"latency_ms": 150})
        assert server.latency_ms == 150
        t0 = time.monotonic()
        complete(server)
        assert time.monotonic() - t0 >= 0.15
        c.post("/_reset")
        assert server.requests() == [] and c.get("/_requests").json() == []
        assert _call(complete(server))[0] == "send_message"


def test_standalone_process():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).resolve().parent / "scripted_llm.py"
    proc = subprocess.Popen([sys.executable, str(script), "--port", str(port),
                             "--latency-ms", "10"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == f"READY http://127.0.0.1:{port}"
        base = f"http://127.0.0.1:{port}"
        httpx.post(base + "/_script", json={"key": "remote", "responses": [
            {"tool": "remote_tool", "args": {"ok": True}}]})
        r = litellm.completion(model="hosted_vllm/s", api_base=base + "/v1", api_key="k",
                               messages=_messages("remote"), timeout=5, num_retries=0)
        assert _call(r) == ("remote_tool", {"ok": True})
        assert len(httpx.get(base + "/_requests", params={"key": "remote"}).json()) == 1
    finally:
        proc.terminate()
        proc.wait(5)


# ----------------------------------------------------------------- concurrency
def test_200_concurrent_requests(server):
    server.latency_ms = 500
    body = {"model": "scripted", "messages": _messages(), "tools": [SEND_MESSAGE_TOOL]}
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    with httpx.Client(limits=limits, timeout=10) as client:
        def one(i):
            b = dict(body, messages=_messages(text=f"m{i}"))
            r = client.post(server.url + "/chat/completions", json=b)
            r.raise_for_status()
            return json.loads(r.json()["choices"][0]["message"]["tool_calls"][0]
                              ["function"]["arguments"])["message"]

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=200) as pool:
            results = list(pool.map(one, range(200)))
        elapsed = time.monotonic() - t0
    assert results == [f"echo: m{i}" for i in range(200)]
    assert len(server.requests()) == 200
    # one at a time would take 100 s; concurrently it is about one latency
    assert elapsed < 20, elapsed
