"""The common blocking send answered beside FastAPI's router (memq/api/send_lane.py) answers
exactly as the route does, and leaves every other request to the route (given / when / then)."""

from __future__ import annotations

import httpx

from api_server import ServeProcess, new_key
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
