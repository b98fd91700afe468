"""Section 1, in-process: the chain with run_step called directly (no Celery, no broker),
its statements counted and its phases timed."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from benchmarks.env import mean
from benchmarks.harness import Bench
from benchmarks.sec_common import CHAIN, HEARTBEAT_FOREVER


def inprocess_chain(b: Bench) -> dict[str, Any]:
    """The same 40-step chain with run_step called in this process: no Celery, no broker.

    SQLAlchemy events count what each step sends to Postgres.
    """
    from sqlalchemy import event

    import workers.step as step_module
    from storage import repository as repo

    rt = b.client.rt
    rt.warm_up()  # the tokenizer's first load (~65 ms) is no part of a step
    agent = b.new_agent("bench-inproc")
    b.llm.set_default(agent.id, HEARTBEAT_FOREVER)
    with rt.db.transaction() as s:
        run, _ = repo.enqueue_message(s, agent.id, "go", max_chars=b.settings.max_message_chars)
    counts: Counter[str] = Counter()

    def on_exec(*_a: Any, **_k: Any) -> None:
        counts["statements"] += 1

    def on_begin(*_a: Any, **_k: Any) -> None:
        counts["transactions"] += 1

    def on_checkout(*_a: Any, **_k: Any) -> None:
        counts["checkouts"] += 1

    # The step's hot statements run on the psycopg connection (storage/repository/rawpg.py),
    # out of SQLAlchemy's sight: they are counted where they are sent.
    from storage.repository import rawpg

    raw_execute = rawpg.execute

    def counted_execute(*args: Any, **kwargs: Any) -> Any:
        session = args[0]
        if session.connection().dialect.name == "postgresql":
            counts["statements"] += 1
        return raw_execute(*args, **kwargs)

    raw_transaction = rawpg.execute_transaction

    def counted_transaction(session: Any, statements: list, decide: Any) -> Any:
        # BEGIN, the statements and a sync in one round trip, then COMMIT (or ROLLBACK) in another.
        counts["statements"] += len(statements)
        counts["pipelined_statements"] += len(statements)
        counts["pipelined_transactions"] += 1
        return raw_transaction(session, statements, decide)

    rawpg.execute = counted_execute
    rawpg.execute_transaction = counted_transaction
    marks: list[tuple[str, float, float]] = []
    undo = _time_phases(rt, marks)
    engine = rt.db.engine  # transactions: BEGIN and COMMIT are round trips
    engines = {engine, rt.db.autocommit_engine}  # autocommit statements (Postgres): no BEGIN, no COMMIT
    for e in engines:
        event.listen(e, "before_cursor_execute", on_exec)
        event.listen(e.pool, "checkout", on_checkout)
    event.listen(engine, "begin", on_begin)
    try:
        steps = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while True:
            res = step_module.run_step(rt, agent.id)  # looked up now: the timed wrapper
            steps += int(res.ran)
            if not res.more_work or steps > CHAIN + 5:
                break
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0  # this process, all threads (litellm's logging thread too)
    finally:
        undo()
        rawpg.execute = raw_execute
        rawpg.execute_transaction = raw_transaction
        for e in engines:
            event.remove(e, "before_cursor_execute", on_exec)
            event.remove(e.pool, "checkout", on_checkout)
        event.remove(engine, "begin", on_begin)
    status = b.run_state(run.id)[0]
    if status != "chain_capped" or steps != CHAIN:
        raise RuntimeError(f"in-process chain ended {status} after {steps} steps")
    rows = b.journal(run_ids=[run.id])
    per = {k: v / steps for k, v in counts.items()}
    pre_ping = bool(getattr(engine.pool, "_pre_ping", False))
    # Round trips: each statement, plus BEGIN and COMMIT per transaction (SQLite
    # shares one engine: its begin events count too), plus the pool's pre-ping (a
    # SELECT 1) per checkout when it is on; a pipelined transaction (rawpg) is two
    # round trips whatever its statements.
    per["round_trips"] = (per.get("statements", 0) - per.get("pipelined_statements", 0)
                          + 2 * per.get("transactions", 0) + 2 * per.get("pipelined_transactions", 0)
                          + (per.get("checkouts", 0) if pre_ping else 0))
    return {"ms_per_step": wall * 1000 / steps, "cpu_ms_per_step": cpu * 1000 / steps, "steps": steps, "in_step_ms_mean": mean(x["in_step_ms"] for x in rows),
            "per_step": per, "pool_pre_ping": pre_ping, "phases_ms": _phases(marks, steps),
            "phases_cpu_ms": _phases(marks, steps, cpu=True)}


# The step's phases, told apart by the functions run_step calls (module attributes,
# looked up at call time, so wrapping them here times the real code path).
PHASE_HOOKS = [
    ("workers.step", "run_step"),
    ("workers.step", "_load_turn"),
    ("workers.step", "_act"),
    ("workers.step", "_commit"),
    ("storage.repository", "release_lease"),
    ("storage.repository", "has_pending_work"),
]


def _time_phases(rt: Any, marks: list[tuple[str, float, float]]):
    """Wrap the step's functions to record (event, wall time, this thread's CPU time);
    returns the undo callable."""
    import importlib

    saved: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attr: str, label: str) -> None:
        fn = getattr(owner, attr, None)
        if fn is None:
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            marks.append((label + ">", time.perf_counter(), time.thread_time()))
            try:
                return fn(*args, **kwargs)
            finally:
                marks.append((label + "<", time.perf_counter(), time.thread_time()))

        saved.append((owner, attr, fn))
        setattr(owner, attr, timed)

    for module, attr in PHASE_HOOKS:
        wrap(importlib.import_module(module), attr, attr)
    wrap(rt.context, "build", "compile")
    wrap(rt.llm, "complete", "llm")

    def undo() -> None:
        for owner, attr, fn in reversed(saved):
            if owner in (rt.context, rt.llm):
                delattr(owner, attr)  # back to the class's method
            else:
                setattr(owner, attr, fn)

    return undo


def _phases(marks: list[tuple[str, float, float]], steps: int, cpu: bool = False) -> dict[str, float]:
    """Mean ms per step of each phase (wall, or the stepping thread's CPU), from the
    enter/exit marks of one chain."""
    spans: Counter[str] = Counter()
    prev_label, prev_t = None, None
    for label, wall_t, cpu_t in marks:
        t = cpu_t if cpu else wall_t
        if prev_label is not None and prev_t is not None:
            # The interval between two marks belongs to the phase it lies in.
            key = {
                ("run_step>", "_load_turn>"): "1 lease acquire",
                ("_load_turn>", "_load_turn<"): "2 load turn",
                ("_load_turn<", "compile>"): "3 compile",
                ("compile>", "compile<"): "3 compile",
                ("compile<", "llm>"): "3 compile",
                ("llm>", "llm<"): "4 LLM call",
                ("llm<", "_act>"): "5 tool",
                ("_act>", "_act<"): "5 tool",
                ("_act<", "_commit>"): "5 tool",
                ("_commit>", "_commit<"): "6 commit (txn)",
                ("_commit<", "release_lease>"): "7 release (txn)",
                ("release_lease>", "release_lease<"): "7 release (txn)",
                ("release_lease<", "has_pending_work>"): "7 release (txn)",
                ("has_pending_work>", "has_pending_work<"): "8 re-check (txn)",
                ("has_pending_work<", "run_step<"): "8 re-check (txn)",
            }.get((prev_label, label))
            if key:
                spans[key] += (t - prev_t) * 1000
        prev_label, prev_t = label, t
    return {k: v / steps for k, v in sorted(spans.items())}
