"""llm_mode=provider_batch through a real worker, a real beat and the scripted provider's batch API.

Steps park their compiled requests; the beat's collector uploads them per model, polls, stores
the replies and rings; the resumed steps commit fenced as always. Crashes of the beat and the
worker at the two dangerous points lose and duplicate nothing.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
from sqlalchemy import func, select

from pb_stack import PB_SETTINGS, BeatProcess, chain_script, journal, transcript, wait_runs
from scripted_llm import ScriptedLLM
from stack import WorkerProcess, client_for, own_stack

WAIT_S = 90  # a ceiling: on a quiet machine every test finishes in seconds


@pytest.fixture(scope="module")
def pb(memq_env, tmp_path_factory):
    """Its own scripted provider, database, Redis db, worker and beat (restartable by the tests)."""
    llm = ScriptedLLM().start()
    extra = {**PB_SETTINGS, "MEMQ_LLM_API_BASE": llm.url, "MEMQ_EMBEDDING_API_BASE": llm.url}
    with own_stack(memq_env, "memq_pb", **extra) as env:
        logs = tmp_path_factory.mktemp("pb")
        stack = _Stack(env, logs, llm)
        stack.start()
        stack.client = client_for(env)
        try:
            yield stack
        finally:
            stack.client.close()
            stack.stop()
            llm.stop()


class _Stack:
    def __init__(self, env, logs, llm) -> None:
        self.env, self.logs, self.llm = env, logs, llm
        self.worker = self.beat = None
        self.client = None
        self.n = 0

    def start(self, worker: bool = True, beat: bool = True):
        """Start a worker and/or a beat side by side (each pays the litellm import), then wait for both."""
        self.n += 1
        if worker:
            self.worker = WorkerProcess(self.env, self.logs / f"worker{self.n}.log", "--concurrency", "20")
        if beat:
            self.beat = BeatProcess(self.env, self.logs / f"beat{self.n}.log")
        if worker:
            self.worker.wait_ready()
        if beat:
            self.beat.wait_ready()

    def stop(self):
        for p in (self.beat, self.worker):
            if p is not None:
                p.stop()

    def agents(self, n: int, tag: str) -> list:
        return [self.client.create_agent(f"{tag}-{i}-{uuid.uuid4().hex[:6]}") for i in range(n)]


@pytest.fixture(autouse=True)
def _clean_llm(pb):
    pb.llm.batch_api.reset_knobs()
    yield
    pb.llm.batch_api.reset_knobs()


def _send_chains(pb, agents, mode: str) -> list[str]:
    runs = []
    for i, agent in enumerate(agents):
        pb.llm.script(agent.id, *chain_script(i))
        runs.append(pb.client.send(agent.id, f"task {i}", llm_mode=mode).run_id)
    return runs


def _parked(pb, **where):
    from storage.models import ParkedStep

    with pb.client.rt.db.transaction() as s:
        stmt = select(ParkedStep)
        for k, v in where.items():
            stmt = stmt.where(getattr(ParkedStep, k) == v)
        return s.execute(stmt).scalars().all()


def test_chains_finish_with_the_normal_routes_transcripts_in_one_round_per_step(pb):
    normal, batched = pb.agents(20, "normal"), pb.agents(20, "batch")
    normal_runs = _send_chains(pb, normal, "normal")
    stats0 = pb.llm.batch_stats()  # counts since the module's provider started
    before = stats0["batches"]
    batch_runs = _send_chains(pb, batched, "provider_batch")
    views = wait_runs(pb.client, normal_runs + batch_runs, WAIT_S)
    assert [v.status for v in views] == ["done"] * 40, [v.error for v in views]
    for a, b in zip(normal, batched):
        assert transcript(pb.client, b.id) == transcript(pb.client, a.id)
        assert [m for _, m, _ in journal(pb.client, a.id)] == ["normal"] * 3
        assert [m for _, m, _ in journal(pb.client, b.id)] == ["provider_batch"] * 3
    for v in views[20:]:
        assert v.replies == [f"working on {views[20:].index(v)}", f"done {views[20:].index(v)}"]
    stats = pb.llm.batch_stats()
    sizes = stats["sizes"][before:]
    assert sum(sizes) == 60 and stats["duplicate_ids"] == stats0["duplicate_ids"]
    assert len(sizes) <= 6, sizes  # 20 agents step together: about one batch per round
    for agent in batched:
        rows = _parked(pb, agent_id=agent.id)
        assert len(rows) == 3 and all(r.attempts == 1 for r in rows)  # 3 rounds, one batch each
    # the scripted provider saw each batched step exactly once
    assert sum(len(pb.llm.requests(a.id)) for a in batched) == 60


def test_failed_missing_and_expired_lines_are_redone_then_take_the_normal_route(pb):
    agents = pb.agents(6, "redo")
    # the first batch: 2 lines fail, 1 is missing; the next one expires after answering 1 line
    pb.llm.set_batch_knobs(fail_next_lines=2, drop_next_lines=1, expire_next_batches=1, expire_done=1)
    runs = _send_chains(pb, agents, "provider_batch")
    views = wait_runs(pb.client, runs, WAIT_S)
    assert [v.status for v in views] == ["done"] * 6, [v.error for v in views]
    for agent in agents:
        assert len(journal(pb.client, agent.id)) == 3 and _count_assistant(pb, agent.id) == 3
    rows = [r for a in agents for r in _parked(pb, agent_id=a.id)]
    assert any(r.attempts > 1 for r in rows)  # failed, missing and expired lines went up again
    assert "expired" in pb.llm.batch_stats()["statuses"]
    mode = {(a.id, n): m for a in agents for n, m, _ in journal(pb.client, a.id)}
    for r in rows:  # a stored reply resumed its step; a line without one took the normal route
        assert mode[(r.agent_id, r.step_no)] == ("provider_batch" if r.reply is not None else "normal")
    assert all(v.replies == [f"working on {i}", f"done {i}"] for i, v in enumerate(views))


def test_a_line_failing_in_every_batch_takes_the_normal_route(pb):
    (agent,) = pb.agents(1, "fallback")
    pb.llm.set_batch_knobs(fail_next_lines=2)  # the first step's line fails in two batches
    (run,) = _send_chains(pb, [agent], "provider_batch")
    (view,) = wait_runs(pb.client, [run], WAIT_S)
    assert view.status == "done" and view.replies == ["working on 0", "done 0"]
    assert [m for _, m, _ in journal(pb.client, agent.id)] == ["normal", "provider_batch", "provider_batch"]
    first = _parked(pb, agent_id=agent.id, step_no=1)[0]
    assert first.attempts == 2 and first.state in ("resumed", "fallback") and "injected" in (first.error or "")


def test_messages_sent_while_parked_wait_behind_the_parked_step_in_order(pb):
    (agent,) = pb.agents(1, "order")
    pb.llm.set_batch_knobs(complete_s=2.0)  # the provider takes its time
    pb.llm.script(agent.id, *chain_script(0))
    first = pb.client.send(agent.id, "first", llm_mode="provider_batch").run_id
    deadline = time.monotonic() + 10
    while not _parked(pb, agent_id=agent.id, state="submitted") and time.monotonic() < deadline:
        time.sleep(0.05)
    later = [pb.client.send(agent.id, f"later {k}").run_id for k in range(3)]  # normal route
    time.sleep(1.0)
    assert [pb.client.get_run(r).status for r in later] == ["queued"] * 3  # nothing overtakes the parked step
    # and the agent's state says it waits for the provider (the client and `memq agent show`)
    assert pb.client.get_agent(agent.id).state == "waiting_provider"
    assert next(a for a in pb.client.list_agents() if a.id == agent.id).state == "waiting_provider"
    import subprocess
    import sys
    shown = subprocess.run([sys.executable, "-m", "memq.cli.main", "agent", "show", agent.id, "--json"],
                           env=pb.env, capture_output=True, text=True, timeout=60)
    assert json.loads(shown.stdout)["state"] == "waiting_provider", shown.stderr
    views = wait_runs(pb.client, [first, *later], WAIT_S)
    assert [v.status for v in views] == ["done"] * 4
    users = [m["message"] for role, m, _ in transcript(pb.client, agent.id)
             if role == "user" and isinstance(m, dict) and m.get("type") == "user_message"]
    assert users == ["first", "later 0", "later 1", "later 2"]
    assert views[0].replies == ["working on 0", "done 0"]
    assert [v.replies for v in views[1:]] == [[f"echo: later {k}"] for k in range(3)]
    assert pb.client.get_agent(agent.id).state == "idle"


def test_beat_killed_between_upload_and_commit_loses_and_duplicates_nothing(pb):
    agents = pb.agents(4, "crash-upload")
    beat = pb.beat
    pb.llm.on_batch("create", lambda _bid: beat.kill())  # dies before it records the provider's id
    runs = _send_chains(pb, agents, "provider_batch")
    deadline = time.monotonic() + 15
    while beat.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert beat.proc.poll() is not None
    pb.llm.batch_api.hooks.clear()
    beat.stop()
    pb.start(worker=False)
    views = wait_runs(pb.client, runs, WAIT_S)
    assert [v.status for v in views] == ["done"] * 4, [v.error for v in views]
    assert pb.llm.batch_stats()["duplicate_ids"] >= 4  # the lost batch's lines went up again
    for i, agent in enumerate(agents):
        assert [m for _, m, _ in journal(pb.client, agent.id)] == ["provider_batch"] * 3
        assert views[i].replies == [f"working on {i}", f"done {i}"]
        assert _count_assistant(pb, agent.id) == 3


def test_beat_and_worker_killed_between_output_and_resume_lose_and_duplicate_nothing(pb):
    agents = pb.agents(4, "crash-output")
    beat, worker = pb.beat, pb.worker
    killed = []

    def crash(_fid):
        if not killed:
            killed.append(1)
            os.killpg(worker.proc.pid, 9)
            beat.kill()

    pb.llm.on_batch("content", crash)  # both die while the output is read
    runs = _send_chains(pb, agents, "provider_batch")
    deadline = time.monotonic() + 15
    while beat.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert killed and beat.proc.poll() is not None
    pb.llm.batch_api.hooks.clear()
    beat.stop()
    worker.stop()
    pb.start()
    views = wait_runs(pb.client, runs, WAIT_S)
    assert [v.status for v in views] == ["done"] * 4, [v.error for v in views]
    for i, agent in enumerate(agents):
        assert [m for _, m, _ in journal(pb.client, agent.id)] == ["provider_batch"] * 3
        assert views[i].replies == [f"working on {i}", f"done {i}"]
        assert _count_assistant(pb, agent.id) == 3


def test_cancelling_a_memq_batch_cancels_its_provider_batch(pb):
    agents = pb.agents(3, "cancel")
    pb.llm.set_batch_knobs(complete_s=30.0)
    for i, a in enumerate(agents):
        pb.llm.script(a.id, *chain_script(i))
    lines = [json.dumps({"agent_id": a.id, "message": f"task {i}"}) for i, a in enumerate(agents)]
    batch_id = pb.client.submit_batch(lines, llm_mode="provider_batch")["batch_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        summary = pb.client.provider_batch_summary(batch_id)
        if summary["provider_batches"] and summary["provider_batches"][0]["state"] == "submitted":
            break
        time.sleep(0.05)
    assert summary["steps"] == {"submitted": 3} and summary["provider_batches"][0]["provider_batch_id"]
    status = pb.client.batch_status(batch_id)
    assert status.provider_steps == {"submitted": 3} and len(status.provider_batch_ids) == 1
    assert pb.client.cancel_batch(batch_id) == {"batch_id": batch_id, "cancelled_runs": 3,
                                                "cancelled_provider_batches": 1}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        summary = pb.client.provider_batch_summary(batch_id)
        if summary["provider_batches"][0]["state"] == "cancelled":
            break
        time.sleep(0.1)
    assert summary["provider_batches"][0]["state"] == "cancelled", summary
    assert summary["steps"] == {"cancelled": 3}
    assert "cancelled" in pb.llm.batch_stats()["statuses"]
    assert all(journal(pb.client, a.id) == [] for a in agents)


def _count_assistant(pb, agent_id: str) -> int:
    from storage.models import Message

    with pb.client.rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Message).where(
            Message.agent_id == agent_id, Message.role == "assistant"))


def test_a_schedule_asked_for_provider_batch_fires_runs_whose_steps_go_through_it(pb):
    # given an agent with a one-shot schedule in provider-batch mode, due now
    (agent,) = pb.agents(1, "sched")
    pb.llm.script(agent.id, *chain_script(0))
    before = pb.llm.batch_stats()["batches"]
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1))
    view = pb.client.add_schedule(agent.id, "nightly digest", at=at, llm_mode="provider_batch")
    assert view.llm_mode == "provider_batch"
    # when the running beat fires it
    deadline = time.monotonic() + WAIT_S
    while (shown := pb.client.list_schedules(agent.id)[0]).last_run_status != "done":
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    # then every step of the fire's run was answered through the provider's batch API
    assert [m for _, m, _ in journal(pb.client, agent.id)] == ["provider_batch"] * 3
    assert pb.llm.batch_stats()["batches"] > before
    # and the mode is checked like a send's
    with pytest.raises(Exception, match="llm_mode must be one of"):
        pb.client.add_schedule(agent.id, "x", every="1h", llm_mode="cheap")


def test_the_cli_sends_in_provider_batch_mode_and_embedded_mode_refuses_it_in_words(pb, tmp_path):
    import subprocess
    import sys

    # given an agent of the running stack
    (agent,) = pb.agents(1, "cli")
    pb.llm.script(agent.id, *chain_script(0))
    # when `memq send --provider-batch --wait` sends it a message from the command line
    proc = subprocess.run([sys.executable, "-m", "memq.cli.main", "send", agent.id, "task 0", "--provider-batch",
                           "--wait", "--timeout", str(WAIT_S), "--json"], env=pb.env, capture_output=True,
                          text=True, timeout=WAIT_S + 30)
    # then the run is done and each of its steps went through the provider's batch API
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "done"
    assert [m for _, m, _ in journal(pb.client, agent.id)] == ["provider_batch"] * 3
    # and in embedded mode (no beat to collect the replies) the flag is refused, saying why
    embedded = {k: v for k, v in pb.env.items() if k not in ("MEMQ_DATABASE_URL", "MEMQ_BROKER_URL")}
    embedded["MEMQ_HOME"] = str(tmp_path / "home")
    made = subprocess.run([sys.executable, "-m", "memq.cli.main", "agent", "create", "--name", "e", "--json"],
                          env=embedded, capture_output=True, text=True, timeout=60)
    refused = subprocess.run([sys.executable, "-m", "memq.cli.main", "send", json.loads(made.stdout)["id"], "hi",
                              "--provider-batch", "--json"], env=embedded, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0
    assert "needs MEMQ_BROKER_URL and a running `memq beat`" in json.loads(refused.stdout)["error"]["message"]


def test_two_hundred_agents_chains_finish_as_on_the_normal_route(pb):
    # given 200 agents on each route, each with a 3-step chain
    normal, batched = pb.agents(200, "n200"), pb.agents(200, "b200")
    stats0 = pb.llm.batch_stats()  # counts since the module's provider started (earlier tests too)
    before = stats0["batches"]
    # when every one is sent its task
    runs = _send_chains(pb, normal, "normal") + _send_chains(pb, batched, "provider_batch")
    views = wait_runs(pb.client, runs, 3 * WAIT_S)
    # then all finish, with the same transcripts, each batched step answered once by the batch API
    assert [v.status for v in views] == ["done"] * 400, {v.status for v in views}
    for a, b in zip(normal, batched):
        assert transcript(pb.client, b.id) == transcript(pb.client, a.id)
    assert all([m for _, m, _ in journal(pb.client, b.id)] == ["provider_batch"] * 3 for b in batched)
    stats = pb.llm.batch_stats()
    assert sum(stats["sizes"][before:]) == 600 and stats["duplicate_ids"] == stats0["duplicate_ids"]
