"""Fault injection of the scripted LLM (tests/scripted_llm.py), used by the chaos suite."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripted_llm import FAULT_KINDS, ScriptedLLM  # noqa: E402

KEY = "agent-faulty"


def body(text: str = "hi") -> dict:
    return {"model": "scripted", "messages": [
        {"role": "system", "content": f"You are {KEY}."},
        {"role": "user", "content": json.dumps({"type": "user_message", "message": text, "time": "t"})},
    ]}


@pytest.fixture
def server():
    s = ScriptedLLM().start()
    yield s
    s.stop()


def post(server: ScriptedLLM, timeout: float = 5.0, text: str = "hi") -> httpx.Response:
    return httpx.post(server.url + "/chat/completions", json=body(text), timeout=timeout)


def test_500(server):
    server.set_faults({"500": 1.0})
    assert post(server).status_code == 500
    assert server.faults()["counts"] == {"500": 1}


def test_429_with_retry_after(server):
    server.set_faults({"429": 1.0}, retry_after=3)
    r = post(server)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["error"]["type"] == "rate_limit_exceeded"


def test_timeout_sleeps_past_the_client(server):
    server.set_faults({"timeout": 1.0}, timeout_s=0.6)
    with pytest.raises(httpx.TimeoutException):
        post(server, timeout=0.2)


def test_malformed_tool_call_arguments(server):
    server.set_faults({"malformed": 1.0})
    r = post(server, text="hello there")
    call = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "send_message"
    with pytest.raises(ValueError):
        json.loads(call["arguments"])
    assert call["arguments"].startswith('{"message": "echo')


def test_empty_choices(server):
    server.set_faults({"empty": 1.0})
    r = post(server)
    assert r.status_code == 200 and r.json()["choices"] == []


def test_mix_is_seeded_and_leaves_scripts_alone(server):
    rates = {k: 0.1 for k in FAULT_KINDS if k not in ("timeout", "slow")}
    server.script(KEY, {"tool": "scripted_tool", "args": {}})

    http = httpx.Client(timeout=5)

    def outcomes() -> list[str]:
        out = []
        for _ in range(200):
            r = http.post(server.url + "/chat/completions", json=body())
            if r.status_code != 200:
                out.append(str(r.status_code))
            elif not r.json()["choices"]:
                out.append("empty")
            else:
                fn = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]
                try:
                    json.loads(fn["arguments"])
                    out.append(fn["name"])
                except ValueError:
                    out.append("malformed")
        return out

    server.set_faults(rates, seed=42)
    first = outcomes()
    counts = server.faults()["counts"]
    assert 40 <= sum(counts.values()) <= 120  # 40 % of 200, loosely
    assert sum(counts.values()) == sum(o not in ("send_message", "scripted_tool") for o in first)
    # a fault never eats the scripted response: the first normal answer gets it, once
    normal = [o for o in first if o in ("send_message", "scripted_tool")]
    assert normal[0] == "scripted_tool" and normal.count("scripted_tool") == 1
    server.set_faults(rates, seed=42)
    again = outcomes()
    assert again == ["send_message" if o == "scripted_tool" else o for o in first]  # same seed, same faults
    assert len(server.requests(KEY)) == 400
    http.close()


def test_http_admin_and_off_switch(server):
    base = server.url.rsplit("/v1", 1)[0]
    assert httpx.post(base + "/_faults", json={"rates": {"500": 1.0}, "seed": 1}).status_code == 200
    assert post(server).status_code == 500
    got = httpx.get(base + "/_faults").json()
    assert got["rates"] == {"500": 1.0} and got["counts"] == {"500": 1}
    assert httpx.post(base + "/_faults", json={"rates": {"nonsense": 0.5}}).status_code == 400
    assert httpx.post(base + "/_faults", json={"rates": {"500": 0.7, "429": 0.7}}).status_code == 400
    httpx.post(base + "/_faults", json={"rates": {}})
    assert post(server).status_code == 200
    server.set_faults({"500": 1.0})
    server.reset()
    assert post(server).status_code == 200 and server.faults()["rates"] == {}


def test_slow_tail_answers_late_but_right(server):
    server.set_faults({"slow": 1.0}, seed=1, slow_s=0.6)
    t0 = time.monotonic()
    r = post(server)
    took = time.monotonic() - t0
    assert r.status_code == 200 and 0.6 <= took < 3.0
    fn = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]
    assert fn["name"] == "send_message" and json.loads(fn["arguments"])["message"].startswith("echo")
    got = server.faults()
    assert got["counts"] == {"slow": 1} and got["slow_s"] == 0.6 and len(got["slow_messages"]) == 1
    server.set_faults(None)
    assert server.faults()["slow_messages"] == []
