"""The common blocking send answered beside FastAPI's router (memq/api/send_lane.py) answers
exactly as the route does, and leaves every other request to the route (given / when / then)."""

from __future__ import annotations

import httpx

from api_server import ServeProcess, log_line, new_key
from helpers import call


_PER_RUN = {"id", "date", "run_id", "step_id", "tool_call_id", "run_ids", "prompt_tokens", "total_tokens"}


def _shape(value: object) -> object:
    """The answer without what differs between two runs (ids, dates, token counts)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in _PER_RUN}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


def test_the_lane_answers_as_the_route_does(server: ServeProcess, serve_env, llm):
    # given a key, and two agents whose LLM answers alike
    key = new_key(serve_env, "lane")["key"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        agents = [http.post("/v1/agents/", json={"name": f"lane-{i}"}).json()["id"] for i in range(2)]
        for a in agents:
            llm.script(a.removeprefix("agent-"),
                       call("core_memory_append", heartbeat=True, thought="Note it.", label="human", content="Tea."),
                       call("send_message", message="Noted: tea."))
        # when the same message is sent through the route (an Idempotency-Key is the route's) and the lane
        body = {"messages": [{"role": "user", "content": "I like tea"}]}
        by_route = http.post(f"/v1/agents/{agents[0]}/messages", json=body, headers={"Idempotency-Key": "lane-1"})
        by_lane = http.post(f"/v1/agents/{agents[1]}/messages", json=body)
        # then both answer 200 with the same messages, stop reason and usage fields
        assert by_route.status_code == by_lane.status_code == 200, (by_route.text, by_lane.text)
        assert _shape(by_lane.json()) == _shape(by_route.json())
        assert [m["message_type"] for m in by_lane.json()["messages"]] == [
            "reasoning_message", "tool_call_message", "tool_return_message", "assistant_message"]
        assert by_lane.headers["content-type"] == by_route.headers["content-type"]
        assert by_lane.headers.get("x-request-id")
        # and what the lane does not take is the route's (refusals, bad JSON, a stream); an unknown
        # agent is the lane's, answered as the route's exception handler answers it
        refused = http.post(f"/v1/agents/{agents[1]}/messages", json={**body, "override_model": "x"})
        assert refused.status_code == 422 and refused.json()["detail"].startswith("override_model"), refused.text
        unknown = http.post("/v1/agents/agent-00000000-0000-4000-8000-000000000000/messages", json=body)
        assert unknown.status_code == 404 and unknown.json()["error"] == "not_found", unknown.text
        bad = http.post(f"/v1/agents/{agents[1]}/messages", content=b'{"messages": [',
                        headers={"content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"] == "malformed_json", bad.text
        llm.script(agents[1].removeprefix("agent-"), call("send_message", message="streamed"))
        streamed = http.post(f"/v1/agents/{agents[1]}/messages", json={**body, "streaming": True})
        assert streamed.status_code == 200 and "text/event-stream" in streamed.headers["content-type"]
        assert '"streamed"' in streamed.text and "[DONE]" in streamed.text
    # and /metrics counts the lane's sends under the route's template
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'route="/v1/agents/{agent_id}/messages",status="200"' in metrics


def test_the_lane_logs_counts_and_bounds_its_sends_as_the_middlewares_do(server: ServeProcess, serve_env, llm):
    # given a key and an agent
    key = new_key(serve_env, "lane-log")["key"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        agent = http.post("/v1/agents/", json={"name": "lane-log"}).json()["id"]
        llm.script(agent.removeprefix("agent-"), call("send_message", message="logged"))
        in_flight_before = _in_flight(server.url)
        # when a common send carries a request id
        r = http.post(f"/v1/agents/{agent}/messages", json={"messages": [{"role": "user", "content": "hi"}]},
                      headers={"x-request-id": "lane-req-7"})
        # then the answer echoes it, and its log line names the request, tenant, agent and status, never the key
        assert r.status_code == 200 and r.headers["x-request-id"] == "lane-req-7"
        line = log_line(server, "lane-req-7")
        assert "tenant=lane-log" in line and f"agent_id={agent}" in line and " 200 " in line
        assert key not in server.log()
        # and a send without one gets a fresh id
        assert len(http.post(f"/v1/agents/{agent}/messages",
                             json={"messages": [{"role": "user", "content": "again"}]}).headers["x-request-id"]) == 32
        # and a body over the limit is refused with 413, whether declared or streamed without a length
        big = {"messages": [{"role": "user", "content": "x" * 70_000}]}
        assert http.post(f"/v1/agents/{agent}/messages", json=big).status_code == 413

        def chunks():
            yield b'{"messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 8000
            yield b'"}]}'

        streamed = http.post(f"/v1/agents/{agent}/messages", content=chunks(),
                             headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and streamed.json()["error"] == "too_large", streamed.text
    # and nothing is left counted in flight
    assert _in_flight(server.url) == in_flight_before


def _in_flight(url: str) -> float:
    lines = [line for line in httpx.get(f"{url}/metrics").text.splitlines()
             if line.startswith("memq_api_requests_in_flight ")]
    return float(lines[0].split()[1]) - 1  # the /metrics request itself is in flight


def test_with_opentelemetry_configured_the_lane_steps_aside():
    # given FastAPI apps with and without a tracer provider of their own (no global provider set)
    from fastapi import FastAPI
    from opentelemetry.trace import NoOpTracerProvider

    from memq.api.app import _traced

    traced = FastAPI(telemetry={"tracer_provider": NoOpTracerProvider()})
    plain = FastAPI()
    # then only the instrumented one counts as traced (its lifespan then turns the lane off, so
    # the common send is traced through FastAPI's stack like every other request)
    assert _traced(traced) is True
    assert _traced(plain) is False
