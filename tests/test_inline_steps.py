"""A task that committed a step runs the agent's next step itself, within a budget
(MEMQ_INLINE_STEPS_MAX steps; MEMQ_INLINE_BUDGET_S once every step thread is busy): a
chain skips most broker round trips, and the budget still sends it back through the
broker so other agents get the thread."""

from __future__ import annotations

import uuid

import pytest

from helpers import call
from stack import own_stack, worker_and_client
from test_ops import free_port, scrape, wait_for

CHAIN = 7  # six heartbeats, then the reply


@pytest.mark.parametrize(("inline_max", "budget_s", "threads", "inline_steps", "tasks"), [
    ("3", "30", "4", 4, 3),  # at most 3 steps a task
    ("1", "30", "4", 0, 7),  # one step per task
    ("64", "0", "1", 0, 7),  # every step thread busy (the only one): no time budget left, one step per task
    ("64", "0", "4", 6, 1),  # threads to spare: the budget in time does not apply, the chain runs in one task
])
def test_a_chain_runs_inline_up_to_the_budget(memq_env, llm, tmp_path, inline_max, budget_s, threads, inline_steps,
                                              tasks):
    port = free_port()
    with own_stack(memq_env, "memq_inline", MEMQ_INLINE_STEPS_MAX=inline_max, MEMQ_MAX_CHAIN="10",
                   MEMQ_INLINE_BUDGET_S=budget_s) as env, \
            worker_and_client(env, tmp_path / "worker.log", "--concurrency", threads, "--metrics-port", str(port),
                              "--loglevel", "DEBUG") \
            as (worker, client):
        # given an agent that chains six heartbeats before it answers
        agent = client.create_agent(f"inline-{uuid.uuid4().hex[:6]}", persona="p", human="h")
        llm.script(agent.id, *[call("send_message", heartbeat=True, message=f"part {i}") for i in range(1, 7)],
                   call("send_message", message="done"))
        # when a message starts the chain
        run = client.send(agent.id, "go", wait=True, timeout_s=30)
        # then every step ran once, in order
        assert run.status == "done" and run.steps == CHAIN
        assert run.replies == [*(f"part {i}" for i in range(1, 7)), "done"]
        # and the tasks ran at most the budget of steps each: 7 steps in ceil(7/budget) tasks
        after = wait_for(lambda: (m := scrape(port)).get(
            ("memq_doorbells_total", (("result", "committed"),)), 0) >= CHAIN and m, 10, "7 steps counted")
        assert after[("memq_steps_inline_total", ())] == inline_steps
        # (Celery's line per task, shown at DEBUG)
        assert worker.log_path.read_text().count("] succeeded in ") - _not_committed(after) == tasks


def _not_committed(metrics: dict) -> int:
    """Doorbells that ran no step (a reconciler ring that found the agent busy or idle) also end a task."""
    return int(sum(v for (name, labels), v in metrics.items()
                   if name == "memq_doorbells_total" and labels != (("result", "committed"),)))


def test_a_worker_told_to_stop_finishes_the_step_in_hand_and_leaves_the_chain_to_the_next(memq_env, llm, tmp_path):
    import os
    import signal
    import time

    from stack import WorkerProcess, stop_process_group

    chain = 60
    with own_stack(memq_env, "memq_inline_stop", MEMQ_MAX_CHAIN=str(chain), MEMQ_RECONCILE_EVERY_S="0.5",
                   MEMQ_RECONCILE_IDLE_S="0.5") as env, \
            worker_and_client(env, tmp_path / "worker1.log", "--concurrency", "4") as (first, client):
        # given a long chain (60 steps of 0.2 s) running inline in one task of an otherwise idle worker
        agent = client.create_agent(f"stop-{uuid.uuid4().hex[:6]}", persona="p", human="h")
        llm.set_default(agent.id, {"tool": "send_message", "args": {"message": "x", "request_heartbeat": True},
                                   "sleep_s": 0.2})
        run = client.send(agent.id, "go")
        deadline = time.monotonic() + 30
        while client.get_run(run.run_id).steps < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # when the worker is told to stop (SIGTERM: a warm shutdown, as a deploy does)
        told = time.monotonic()
        os.killpg(first.proc.pid, signal.SIGTERM)
        first.proc.wait(timeout=30)
        # then it exits after the step in hand, not after the chain (~11 s more)
        assert time.monotonic() - told < 5, first.log_path.read_text()[-2000:]
        assert client.get_run(run.run_id).status == "running"
        # and the next worker finishes the chain, every step once
        second = WorkerProcess(env, tmp_path / "worker2.log", "--concurrency", "4")
        try:
            second.wait_ready()
            done = client.wait(run.run_id, timeout_s=60)
            assert done.status == "chain_capped" and done.steps == chain, done
            assert len(done.replies) == chain
        finally:
            stop_process_group(second.proc)
        llm.set_default(agent.id, None)
