"""Raw HTTP against `memq serve`: callbacks (signed, delivered once, retried after a 500),
idempotent sends, batches, a run's step journal, tenant usage, another tenant's ids on
the archival / schedule / native routes, and bad input (given / when / then)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import httpx
import pytest

from api_server import Receiver, ServeProcess, signed_by

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def _agent(http: httpx.Client, name: str) -> str:
    r = http.post("/v1/agents/", json={"name": name, "memory_blocks": [{"label": "human", "value": "", "limit": 200}]})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def _body(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


def _wait(predicate, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.httpd.shutdown()


def test_a_callback_is_signed_retried_after_a_500_and_delivered_once(http, receiver, serve_env):
    # given an agent and a receiver whose first answer is a 500
    aid = _agent(http, "cb-agent")
    receiver.statuses["/flaky"] = [500]
    # when a message is sent with create_async and a callback_url
    r = http.post(f"/v1/agents/{aid}/messages/async", json={**_body("ping"), "callback_url": receiver.url + "/flaky"})
    assert r.status_code == 200, r.text
    run_id = r.json()["id"]
    # then the finished run is posted, refused once, posted again and accepted
    posts = _wait(lambda: len(receiver.to("/flaky")) >= 2 and receiver.to("/flaky"), what="the retried callback")
    time.sleep(1.0)  # a delivered callback is not posted again
    posts = receiver.to("/flaky")
    assert len(posts) == 2 and [p[1]["X-Memq-Attempt"] for p in posts] == ["1", "2"]
    _, headers, body = posts[-1]
    doc = json.loads(body)
    assert doc["id"] == run_id == headers["X-Memq-Run-Id"] and doc["status"] == "completed"
    assert [m["content"] for m in doc["messages"] if m["message_type"] == "assistant_message"] == ["echo: ping"]
    assert doc["usage"]["step_count"] == 1
    # and the signature verifies with the server's secret, and not with another one or another body
    secret = serve_env["MEMQ_CALLBACK_SECRET"]
    assert signed_by(secret, headers, body)
    assert not signed_by("another-secret", headers, body) and not signed_by(secret, headers, body + b" ")


def test_a_callback_to_a_healthy_receiver_is_posted_exactly_once(http, receiver):
    aid = _agent(http, "cb-once")
    runs = [http.post(f"/v1/agents/{aid}/messages/async", json={**_body(f"m{i}"), "callback_url": receiver.url + "/once"})
            .json()["id"] for i in range(3)]
    _wait(lambda: len(receiver.to("/once")) >= 3, what="three callbacks")
    time.sleep(1.0)
    assert sorted(p[1]["X-Memq-Run-Id"] for p in receiver.to("/once")) == sorted(runs)


def test_bad_callback_urls_are_refused_naming_the_field(http):
    aid = _agent(http, "cb-bad")
    for url in ("ftp://example.com/x", "not a url", "http://"):
        r = http.post(f"/v1/agents/{aid}/messages/async", json={**_body("x"), "callback_url": url})
        assert r.status_code == 422 and r.json()["detail"].startswith("callback_url:"), r.text
    assert http.get("/v1/runs/", params={"agent_id": aid}).json() == []  # nothing was queued


def test_a_repeated_idempotency_key_answers_the_first_send(http):
    # given an agent
    aid = _agent(http, "idem")
    # when the same async send is retried with one Idempotency-Key, and a blocking one with a body key
    first = http.post(f"/v1/agents/{aid}/messages/async", json=_body("once"), headers={"Idempotency-Key": "k-1"})
    again = http.post(f"/v1/agents/{aid}/messages/async", json=_body("once"), headers={"Idempotency-Key": "k-1"})
    a = http.post(f"/v1/agents/{aid}/messages", json={**_body("twice?"), "idempotency_key": "k-2"})
    b = http.post(f"/v1/agents/{aid}/messages", json={**_body("twice?"), "idempotency_key": "k-2"})
    # then each key made one run, and the agent saw each message once
    assert first.json()["id"] == again.json()["id"]
    assert a.json()["usage"]["run_ids"] == b.json()["usage"]["run_ids"] and a.json()["messages"] == b.json()["messages"]
    _wait(lambda: http.get(f"/v1/runs/{first.json()['id']}").json()["status"] == "completed")
    users = [m["content"] for m in http.get(f"/v1/agents/{aid}/messages", params={"order": "asc"}).json()
             if m["message_type"] == "user_message"]
    assert users == ["once", "twice?"]
    assert len(http.get("/v1/runs/", params={"agent_id": aid}).json()) == 2
    # and an over-long key is refused, naming it, with nothing queued
    long = http.post(f"/v1/agents/{aid}/messages/async", json=_body("x"), headers={"Idempotency-Key": "k" * 300})
    assert long.status_code == 422 and long.json()["detail"].startswith("Idempotency-Key:"), long.text
    assert len(http.get("/v1/runs/", params={"agent_id": aid}).json()) == 2


def test_batches_submit_status_results_and_cancel(http, other_key, server: ServeProcess):
    # given two agents of this tenant
    a, b = _agent(http, "batch-a"), _agent(http, "batch-b")
    # when a JSON array is submitted
    r = http.post("/v1/memq/batches", json=[{"id": "q1", "agent_id": a, "message": "first"},
                                            {"id": "q2", "agent_id": b, "message": "second"}])
    assert r.status_code == 200, r.text
    batch = r.json()["batch_id"]
    assert batch.startswith("batch-") and r.json()["enqueued"] == 2
    # then its status finishes and the results stream as JSONL, one line per input line, in order
    _wait(lambda: http.get(f"/v1/memq/batches/{batch}").json()["finished"], what="the batch")
    res = http.get(f"/v1/memq/batches/{batch}/results")
    assert res.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in res.text.splitlines()]
    assert [(x["id"], x["agent_id"], x["status"], x["replies"]) for x in rows] == [
        ("q1", a, "done", ["echo: first"]), ("q2", b, "done", ["echo: second"])]
    # when JSONL with a bad line is sent, it is refused naming the line; skip_invalid keeps it as a result
    jsonl = f'{{"agent_id": "{a}", "message": "ok"}}\n{{"agent_id": "{a}"}}\n'
    headers = {"Content-Type": "application/x-ndjson"}
    bad = http.post("/v1/memq/batches", content=jsonl, headers=headers)
    assert bad.status_code == 422 and "line 2" in bad.json()["detail"] and "'message'" in bad.json()["detail"]
    skipped = http.post("/v1/memq/batches", params={"skip_invalid": "true"}, content=jsonl, headers=headers).json()
    assert (skipped["enqueued"], skipped["invalid"]) == (1, 1)
    # and cancel answers for the tenant's batch
    assert http.post(f"/v1/memq/batches/{skipped['batch_id']}/cancel").status_code == 200
    # and another tenant cannot name this tenant's agents in its batch
    other = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {other_key}"}, timeout=30)
    theirs = other.post("/v1/memq/batches", json=[{"agent_id": a, "message": "hi"}])
    assert theirs.status_code == 422 and "unknown agent" in theirs.json()["detail"]


def test_a_runs_step_journal_and_the_tenants_usage(http, llm):
    # given a finished two-step run
    from helpers import call

    aid = _agent(http, "journal")
    llm.script(aid.removeprefix("agent-"), call("archival_memory_insert", heartbeat=True, content="note"),
               call("send_message", message="stored"))
    reply = http.post(f"/v1/agents/{aid}/messages", json=_body("remember this")).json()
    run_id = reply["usage"]["run_ids"][0]
    # when its journal is read, then each step shows its tool, outcome, tokens, latency and cost
    doc = http.get(f"/v1/memq/runs/{run_id}/steps").json()
    steps = doc["steps"]
    assert doc["run"]["id"] == run_id and [s["tool"] for s in steps] == ["archival_memory_insert", "send_message"]
    assert [s["outcome"] for s in steps] == ["tool_ok", "tool_ok"]
    assert all(s["prompt_tokens"] > 0 and s["llm_latency_ms"] > 0 and s["cost_usd"] >= 0 for s in steps)
    # and the tenant's usage for that agent adds up the journal, on today's UTC date
    usage = http.get("/v1/memq/usage", params={"agent_id": aid}).json()
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert [(d["date"], d["agent_id"], d["steps"]) for d in usage["days"]] == [(today, aid, 2)]
    assert usage["total"]["prompt_tokens"] == sum(s["prompt_tokens"] for s in steps)
    assert usage["agents"][0]["total_tokens"] == usage["total"]["total_tokens"] > 0
    # and a window that ends before today holds nothing
    assert http.get("/v1/memq/usage", params={"end": "2020-01-01"}).json()["days"] == []


def test_another_tenants_ids_answer_404_on_archival_schedule_and_native_routes(http, server: ServeProcess, other_key):
    # given an agent of this tenant with a passage, a schedule, a finished run and a batch
    aid = _agent(http, "mine")
    passage = http.post(f"/v1/agents/{aid}/archival-memory", json={"text": "private"}).json()[0]["id"]
    sched = http.post(f"/v1/agents/{aid}/schedule", json={**_body("later"), "schedule": {
        "type": "recurring", "cron_expression": "0 3 * * *"}}).json()["id"]
    run_id = http.post(f"/v1/agents/{aid}/messages", json=_body("hi")).json()["usage"]["run_ids"][0]
    batch = http.post("/v1/memq/batches", json=[{"agent_id": aid, "message": "b"}]).json()["batch_id"]
    other = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {other_key}"}, timeout=30)
    calls = [
        ("POST", f"/v1/agents/{aid}/archival-memory", {"text": "x"}), ("GET", f"/v1/agents/{aid}/archival-memory", None),
        ("GET", f"/v1/agents/{aid}/archival-memory/search?query=private", None),
        ("DELETE", f"/v1/agents/{aid}/archival-memory/{passage}", None),
        ("POST", f"/v1/agents/{aid}/schedule", {**_body("x"), "schedule": {"type": "recurring", "cron_expression": "* * * * *"}}),
        ("GET", f"/v1/agents/{aid}/schedule", None), ("GET", f"/v1/agents/{aid}/schedule/{sched}", None),
        ("DELETE", f"/v1/agents/{aid}/schedule/{sched}", None),
        ("GET", f"/v1/memq/runs/{run_id}/steps", None), ("GET", f"/v1/memq/usage?agent_id={aid}", None),
        ("GET", f"/v1/memq/batches/{batch}", None), ("GET", f"/v1/memq/batches/{batch}/results", None),
        ("POST", f"/v1/memq/batches/{batch}/cancel", None),
    ]
    swap = {aid: "agent-" + UNKNOWN, run_id: "run-" + UNKNOWN, batch: "batch-" + UNKNOWN, sched: "schedule-" + UNKNOWN}
    for method, path, payload in calls:
        # when the other tenant uses the ids, then 404, as this tenant gets for unknown ids
        r = other.request(method, path, json=payload)
        assert r.status_code == 404, (method, path, r.text)
        unknown_path = path
        for mine, nobody in swap.items():
            unknown_path = unknown_path.replace(mine, nobody)
        missing = http.request(method, unknown_path, json=payload)
        assert missing.status_code == 404 and missing.json()["error"] == r.json()["error"], (unknown_path, missing.text)
    # and nothing of this tenant's changed
    assert [p["id"] for p in http.get(f"/v1/agents/{aid}/archival-memory").json()] == [passage]
    assert [m["id"] for m in http.get(f"/v1/agents/{aid}/schedule").json()["scheduled_messages"]] == [sched]
    assert other.get("/v1/memq/usage").json()["days"] == []


@pytest.mark.parametrize("method,path,payload,status,field", [
    ("POST", "archival-memory", {"text": "   "}, 422, "text:"),
    ("POST", "archival-memory", {"tags": ["a"]}, 422, "text:"),
    ("POST", "archival-memory", {"text": "x", "tags": "not-a-list"}, 422, "tags:"),
    ("GET", "archival-memory/search", None, 422, "query:"),
    ("GET", "archival-memory/search?query=x&top_k=0", None, 422, "top_k:"),
    ("GET", "archival-memory/search?query=x&start_datetime=yesterday", None, 422, "start_datetime:"),
    ("GET", "archival-memory/search?query=x&tag_match_mode=some", None, 422, "tag_match_mode:"),
    ("DELETE", "archival-memory/passage-abc", None, 404, "unknown passage"),
    ("POST", "schedule", {"schedule": {"type": "recurring", "cron_expression": "0 3 * * *"}}, 422, "messages:"),
    ("POST", "schedule", {"messages": [{"role": "user", "content": "x"}],
                          "schedule": {"type": "recurring", "cron_expression": "every tuesday"}}, 422, "invalid cron"),
    ("POST", "schedule", {"messages": [{"role": "user", "content": "x"}],
                          "schedule": {"type": "one-time", "scheduled_at": 1_000_000_000_000}}, 422, "in the past"),
    ("POST", "schedule", {"messages": [{"role": "user", "content": "x"}], "callback_url": "http://x",
                          "schedule": {"type": "recurring", "cron_expression": "0 3 * * *"}}, 422, "callback_url:"),
])
def test_bad_input_on_archival_and_schedule_routes_names_the_field(http, method, path, payload, status, field):
    aid = _agent(http, "bad-input")
    r = http.request(method, f"/v1/agents/{aid}/{path}", json=payload)
    assert r.status_code == status and field in r.json()["detail"], r.text
    assert http.get(f"/v1/agents/{aid}/archival-memory").json() == []
    assert http.get(f"/v1/agents/{aid}/schedule").json()["scheduled_messages"] == []


@pytest.mark.parametrize("content,ctype,params,status,field", [
    ("[1, 2", "application/json", {}, 400, "malformed JSON"),
    ('{"agent_id": "x", "message": "m"}', "application/json", {}, 422, "body:"),
    ("", "application/x-ndjson", {}, 422, "no lines"),
    ('{"message": "m"}\n', "application/x-ndjson", {}, 422, "line 1"),
    ("[]", "application/json", {"create_agents": "maybe"}, 422, "create_agents:"),
])
def test_bad_batches_and_native_queries_are_refused(http, content, ctype, params, status, field):
    r = http.post("/v1/memq/batches", content=content, headers={"Content-Type": ctype}, params=params)
    assert r.status_code == status and field in r.json()["detail"], r.text


def test_bad_native_ids_and_dates(http):
    assert http.get("/v1/memq/usage", params={"start": "soon"}).json()["detail"].startswith("start:")
    assert http.get("/v1/memq/runs/run-nope/steps").status_code == 404
    assert http.get("/v1/memq/batches/nope").status_code == 404
