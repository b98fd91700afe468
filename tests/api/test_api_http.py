"""Raw HTTP against `memq serve`: keys and tenants, concurrency, bad input, a broker
that is down (given / when / then)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from api_server import ServeProcess, free_port, log_line, memq_cli, use_then_revoke


def _agent(http: httpx.Client, name: str = "http-agent") -> dict:
    r = http.post("/v1/agents/", json={"name": name, "memory_blocks": [{"label": "human", "value": "", "limit": 200}]})
    assert r.status_code == 200, r.text
    return r.json()


def _send(http: httpx.Client, agent_id: str, text: str) -> httpx.Response:
    return http.post(f"/v1/agents/{agent_id}/messages", json={"messages": [{"role": "user", "content": text}]})


def test_health_needs_no_key_and_everything_else_does(server: ServeProcess):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    for headers in ({}, {"Authorization": "Bearer memq_not-a-key"}, {"Authorization": "Basic abc"}):
        r = httpx.get(f"{server.url}/v1/agents/", headers=headers)
        assert r.status_code == 401 and "API key" in r.json()["detail"], r.text
    assert httpx.get(f"{server.url}/openapi.json").json()["info"]["title"] == "memq"
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_a_revoked_key_is_refused_from_then_on(server: ServeProcess, serve_env):
    # given a working key, when it is revoked by its prefix
    made = use_then_revoke(server.url, serve_env, "shortlived")
    headers = {"Authorization": f"Bearer {made['key']}"}
    # then it gets 401 once the server's key cache lets it go (MEMQ_API_KEY_CACHE_S, 5 s; the bound
    # itself is tests/api/test_api_ops.py's), and the key list shows it without its text
    deadline = time.monotonic() + 6.0
    while httpx.get(f"{server.url}/v1/agents/", headers=headers).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{server.url}/v1/agents/", headers=headers).status_code == 401
    listed = memq_cli(serve_env, "key", "list", "--tenant", "shortlived", "--json")
    assert made["key"] not in listed.stdout and json.loads(listed.stdout)["keys"][0]["id"] == made["id"]


def test_another_tenants_ids_answer_404_on_every_route(server: ServeProcess, http: httpx.Client, other_key: str):
    # given an agent of tenant acme with a finished run
    agent = _agent(http)
    aid = agent["id"]
    reply = _send(http, aid, "hello")
    run_id = reply.json()["usage"]["run_ids"][0]
    # when tenant globex uses those ids, every route answers 404 as for an unknown id
    other = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {other_key}"}, timeout=30)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    calls = [
        ("GET", f"/v1/agents/{aid}", None), ("PATCH", f"/v1/agents/{aid}", {"name": "x"}),
        ("DELETE", f"/v1/agents/{aid}", None),
        ("POST", f"/v1/agents/{aid}/messages", body), ("POST", f"/v1/agents/{aid}/messages/async", body),
        ("POST", f"/v1/agents/{aid}/messages/stream", body), ("GET", f"/v1/agents/{aid}/messages", None),
        ("POST", f"/v1/agents/{aid}/messages/cancel", {}),
        ("GET", f"/v1/runs/{run_id}", None), ("GET", f"/v1/runs/{run_id}/messages", None),
        ("GET", f"/v1/agents/{aid}/core-memory/blocks", None),
        ("GET", f"/v1/agents/{aid}/core-memory/blocks/human", None),
        ("PATCH", f"/v1/agents/{aid}/core-memory/blocks/human", {"value": "stolen"}),
    ]
    unknown = "agent-00000000-0000-4000-8000-000000000000"
    for method, path, payload in calls:
        r = other.request(method, path, json=payload)
        assert r.status_code == 404, (method, path, r.text)
        missing = http.request(method, path.replace(aid, unknown).replace(run_id, "run-" + unknown[6:]), json=payload)
        assert missing.status_code == 404 and r.json()["error"] == missing.json()["error"], (path, missing.text)
    assert other.get("/v1/runs/", params={"agent_id": aid}).json() == []
    assert aid not in [a["id"] for a in other.get("/v1/agents/").json()]
    # then nothing of acme's changed
    assert http.get(f"/v1/agents/{aid}").json()["name"] == "http-agent"
    assert http.get(f"/v1/agents/{aid}/core-memory/blocks/human").json()["value"] == ""


def test_ten_concurrent_blocking_sends_to_one_agent_each_get_their_reply_in_order(http: httpx.Client, llm):
    # given an agent
    aid = _agent(http, "busy")["id"]
    texts = [f"message {i}" for i in range(10)]
    # when ten clients send at once
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda t: _send(http, aid, t), texts))
    # then each gets its own reply (the scripted LLM echoes)
    for text, r in zip(texts, responses):
        assert r.status_code == 200, r.text
        assert [m["content"] for m in r.json()["messages"] if m["message_type"] == "assistant_message"] == [
            f"echo: {text}"]
    # and the runs were processed in arrival order, each prompt holding every earlier exchange
    runs = http.get("/v1/runs/", params={"agent_id": aid, "order": "asc", "limit": 20}).json()
    finished = [r["completed_at"] for r in runs]
    assert finished == sorted(finished) and len(runs) == 10
    users = [m["content"] for m in http.get(f"/v1/agents/{aid}/messages", params={"order": "asc", "limit": 1000}).json()
             if m["message_type"] == "user_message"]
    assert sorted(users) == sorted(texts) and len(users) == 10
    last_prompt = llm.requests(aid.removeprefix("agent-"))[-1]["messages"]
    seen = " ".join(str(m.get("content")) for m in last_prompt)
    assert all(t in seen for t in texts)


@pytest.mark.parametrize("body, status, says", [
    (b'{"messages": [', 400, "malformed JSON"),
    (b'{"messages": [{"role": "user", "content": 5}]}', 422, "messages.0.content"),
    (b'{"messages": [{"role": "robot", "content": "hi"}]}', 422, "messages.0.role"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "client_tools": [{"name": "x"}]}', 422, "client_tools"),
    (b'{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}', 422, "one message"),
    (b'{"messages": [{"role": "user", "content": "   "}]}', 422, "must not be empty"),
])
def test_bad_message_bodies_get_a_json_error_naming_the_problem(http: httpx.Client, body, status, says):
    aid = _agent(http, "strict")["id"]
    r = http.post(f"/v1/agents/{aid}/messages", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and says in r.json()["detail"], r.text
    assert http.get("/v1/runs/", params={"agent_id": aid}).json() == []  # nothing was queued


def test_bad_agent_bodies_and_oversized_bodies(http: httpx.Client):
    r = http.post("/v1/agents/", json={"name": "x", "memory_blocks": [{"label": "human", "value": "abc", "limit": 2}]})
    assert r.status_code == 422 and "limit is 2" in r.json()["detail"]
    r = http.post("/v1/agents/", json={"name": "x", "tool_ids": ["tool-1"]})
    assert r.status_code == 422 and r.json()["detail"].startswith("tool_ids:")
    r = http.post("/v1/agents/", json={"name": ["not", "a", "string"]})
    assert r.status_code == 422 and r.json()["detail"].startswith("name:")
    r = http.post("/v1/agents/", content=b"x" * 70_000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert http.get("/v1/agents/not-an-id").status_code == 404


def test_request_logs_carry_request_id_tenant_and_agent_but_never_the_key(server: ServeProcess, http, key):
    aid = _agent(http, "logged")["id"]
    r = http.get(f"/v1/agents/{aid}", headers={"x-request-id": "req-test-42"})
    assert r.headers["x-request-id"] == "req-test-42"
    line = log_line(server, "req-test-42")
    assert "tenant=acme" in line and f"agent_id={aid}" in line and "200" in line
    assert key not in server.log()


def test_with_the_broker_unreachable_sends_get_503_and_readyz_fails(serve_env, worker, key, tmp_path):
    # given a second server whose broker is a closed port
    closed = f"redis://127.0.0.1:{free_port()}/0"
    down = ServeProcess({**serve_env, "MEMQ_BROKER_URL": closed}, tmp_path / "down.log").wait_up()
    try:
        client = httpx.Client(base_url=down.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        # then /readyz fails naming the broker, reads still work, and a send is refused with Retry-After
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] != "ok"
        aid = _agent(client, "no-broker")["id"]
        r = _send(client, aid, "hello")
        assert r.status_code == 503 and r.headers["retry-after"] and "broker" in r.json()["detail"]
        assert client.get("/v1/runs/", params={"agent_id": aid}).json() == []  # nothing half-queued
    finally:
        down.stop()
