"""Operating `memq serve`: /metrics, the key cache's revocation bound, and blocking
sends woken by the step's run event rather than by polling (given / when / then)."""

from __future__ import annotations

import re
import time

import httpx

from api_server import ServeProcess, use_then_revoke

KEY_CACHE_S = 5.0  # MEMQ_API_KEY_CACHE_S's default: the bound README states


def _count(metrics: str, route: str, status: int, method: str) -> float:
    pattern = (r'^memq_api_requests_total\{method="%s",route="%s",status="%d"\} ([0-9.e+]+)$'
               % (method, re.escape(route), status))
    found = re.search(pattern, metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_requests_by_route_template_and_status(server: ServeProcess, http: httpx.Client):
    # given the counts so far
    before = httpx.get(f"{server.url}/metrics").text
    agents_200 = _count(before, "/v1/agents/{agent_id}", 200, "GET")
    agents_404 = _count(before, "/v1/agents/{agent_id}", 404, "GET")
    unmatched = _count(before, "unmatched", 404, "GET")
    # when two agents are read, an unknown one is asked for, and a path no route serves
    ids = [http.post("/v1/agents/", json={"name": f"metrics-{i}"}).json()["id"] for i in range(2)]
    for agent_id in ids:
        assert http.get(f"/v1/agents/{agent_id}").status_code == 200
    assert http.get("/v1/agents/agent-00000000-0000-0000-0000-000000000000").status_code == 404
    assert http.get("/v1/no-such-route").status_code == 404
    # then /metrics (no tenant key needed) counts them by route template and status, ids never appear
    after = httpx.get(f"{server.url}/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    assert _count(after.text, "/v1/agents/{agent_id}", 200, "GET") == agents_200 + 2
    assert _count(after.text, "/v1/agents/{agent_id}", 404, "GET") == agents_404 + 1
    assert _count(after.text, "unmatched", 404, "GET") == unmatched + 1
    assert 'memq_api_request_duration_seconds_bucket{le="0.05",method="GET",route="/v1/agents/{agent_id}"}' \
        in after.text
    assert not any(agent_id.removeprefix("agent-") in after.text for agent_id in ids)


def test_metrics_need_their_token_when_one_is_set(serve_env, worker, tmp_path):
    # given a server with MEMQ_API_METRICS_TOKEN
    proc = ServeProcess({**serve_env, "MEMQ_API_METRICS_TOKEN": "scrape-me"}, tmp_path / "serve.log").wait_up()
    try:
        # then /metrics is 401 without it and 200 with it
        assert httpx.get(f"{proc.url}/metrics").status_code == 401
        r = httpx.get(f"{proc.url}/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert r.status_code == 200 and "memq_api_requests_total" in r.text
    finally:
        proc.stop()


def test_a_revoked_key_stops_working_within_the_key_cache_bound(server: ServeProcess, serve_env):
    # given a key that was just used (so this process has it cached), when it is revoked
    made = use_then_revoke(server.url, serve_env, "cached")
    headers = {"Authorization": f"Bearer {made['key']}"}
    revoked = time.monotonic()
    # then it answers 401 within MEMQ_API_KEY_CACHE_S (plus a request's time), and stays refused
    while httpx.get(f"{server.url}/v1/agents/", headers=headers).status_code == 200:
        assert time.monotonic() - revoked < KEY_CACHE_S + 1.0, "revoked key still accepted after the cache bound"
        time.sleep(0.1)
    for _ in range(3):
        assert httpx.get(f"{server.url}/v1/agents/", headers=headers).status_code == 401


def test_a_blocking_send_is_woken_by_the_run_event_not_by_polling(serve_env, worker, key, tmp_path):
    # given a server that would re-read a waiting run only every 30 s
    proc = ServeProcess({**serve_env, "MEMQ_API_POLL_S": "30"}, tmp_path / "serve.log").wait_up()
    try:
        with httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            agent_id = http.post("/v1/agents/", json={"name": "woken"}).json()["id"]
            # when blocking sends go to the agent
            for i in range(3):
                t0 = time.monotonic()
                r = http.post(f"/v1/agents/{agent_id}/messages",
                              json={"messages": [{"role": "user", "content": f"hello {i}"}]})
                elapsed = time.monotonic() - t0
                # then each answers with its finished turn long before the poll would have seen it
                assert r.status_code == 200, r.text
                assert r.json()["stop_reason"]["stop_reason"] == "end_turn"
                assert elapsed < 5.0, f"send {i} took {elapsed:.1f} s: it waited for the poll"
    finally:
        proc.stop()
