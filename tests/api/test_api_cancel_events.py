"""Cancelling queued runs announces them as a step's commit does: a blocking send and a
stream waiting on them end at once, not at the watcher's next poll (given / when / then)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from api_server import ServeProcess
from helpers import call


@pytest.fixture(scope="module")
def slow_poll_server(serve_env: dict[str, str], worker, tmp_path_factory) -> Iterator[ServeProcess]:
    """A `memq serve` whose watcher polls only every 5 s: a waiter that ends sooner learned it
    from a run event."""
    proc = ServeProcess({**serve_env, "MEMQ_API_POLL_S": "5"}, tmp_path_factory.mktemp("serve-slow") / "serve.log")
    yield proc.wait_up()
    proc.stop()


def _runs(http: httpx.Client, aid: str, n: int) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        runs = http.get("/v1/runs/", params={"agent_id": aid, "order": "asc"}).json()
        if len(runs) >= n:
            return [r["id"] for r in runs]
        assert time.monotonic() < deadline, f"{len(runs)} queued runs of {n}"
        time.sleep(0.02)


def test_a_cancel_ends_its_blocking_send_and_stream_at_once(slow_poll_server: ServeProcess, key: str, llm):
    with httpx.Client(base_url=slow_poll_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        # given an agent in a slow step (0.8 s LLM call), with a blocking send and a stream queued behind it
        aid = http.post("/v1/agents/", json={"name": "cancel-events"}).json()["id"]
        llm.script(aid.removeprefix("agent-"), {**call("send_message", message="first"), "sleep_s": 0.8})
        first = http.post(f"/v1/agents/{aid}/messages/async", json={"messages": [{"role": "user", "content": "one"}]})
        assert first.status_code == 200, first.text
        ended: dict[str, tuple[float, object]] = {}

        def blocking() -> None:
            r = http.post(f"/v1/agents/{aid}/messages", json={"messages": [{"role": "user", "content": "two"}]})
            ended["blocking"] = (time.monotonic(), r)

        def stream() -> None:
            with http.stream("POST", f"/v1/agents/{aid}/messages/stream",
                             json={"messages": [{"role": "user", "content": "three"}]}) as r:
                lines = [line for line in r.iter_lines() if line.startswith("data:")]
            ended["stream"] = (time.monotonic(), lines)

        waiters = [threading.Thread(target=blocking), threading.Thread(target=stream)]
        for w in waiters:
            w.start()
        queued = _runs(http, aid, 3)[1:]
        # when both queued runs are cancelled
        cancelled = http.post(f"/v1/agents/{aid}/messages/cancel", json={"run_ids": queued})
        cancelled_at = time.monotonic()
        assert cancelled.status_code == 200 and sorted(cancelled.json()["cancelled"]) == sorted(queued), cancelled.text
        for w in waiters:
            w.join(10)
        # then the blocking send answers its cancelled run, and the stream ends with the stop reason,
        # both well before the 5-s poll
        at, response = ended["blocking"]
        assert response.status_code == 200 and response.json()["stop_reason"]["stop_reason"] == "cancelled", \
            response.text
        assert at - cancelled_at < 1.5, f"the blocking send ended {at - cancelled_at:.2f} s after the cancel"
        at, lines = ended["stream"]
        payloads = [line.removeprefix("data:").strip() for line in lines]
        assert payloads[-1] == "[DONE]"
        assert {"message_type": "stop_reason", "stop_reason": "cancelled"} in [json.loads(p) for p in payloads[:-1]]
        assert at - cancelled_at < 1.5, f"the stream ended {at - cancelled_at:.2f} s after the cancel"
