"""The slow, quiet faults of a chaos run (issue 19), and what each one measured.

Each action takes the ChaosRun, breaks one thing, waits, mends it, and appends an
event (``{"event": ..., "at": epoch, "took_s": ...}``) with its own figures:

* ``freeze_redis``  SIGSTOP the run's own redis-server for ``freeze_fault_s``, SIGCONT.
* ``freeze_pg``     SIGSTOP the run's own Postgres (postmaster, then every backend), SIGCONT.
* ``full_disk``     fill the small tablespace the chaos database lives in; free it
                    after ``full_disk_s``.
* ``cut_broker``    the proxy between worker 0 and Redis goes silent for ``cut_s``, then
                    resets every connection and forwards again.
* ``slow_tail_on``  from here on, ``slow_rate`` of LLM calls take ``slow_s``.

``sends_during`` says how the sends made inside an event's window fared (the
longest attempt, the errors they got, one message of each), so "fail fast with a
clear error" is a number. ``cut_report`` and ``slow_tail_report`` read Postgres.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.chaos.harness import log


def _event(run: Any, name: str, at: float, **info: Any) -> dict[str, Any]:
    ev = {"event": name, "at": at, "took_s": round(time.time() - at, 2), **info}
    run.events.append(ev)
    return ev


def freeze_redis(run: Any) -> None:
    proc = getattr(run.broker, "proc", None)
    if proc is None:
        raise RuntimeError("--freeze-redis needs the run's own Redis (--broker redis or redis-aof)")
    import os

    t = time.time()
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        run.stop.wait(run.cfg.freeze_fault_s)
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    _event(run, "redis_freeze", t, frozen_s=run.cfg.freeze_fault_s)
    log(f"Redis frozen {run.cfg.freeze_fault_s:g}s (SIGSTOP/SIGCONT)")


def freeze_pg(run: Any) -> None:
    t = time.time()
    n = run.pg.freeze()
    try:
        run.stop.wait(run.cfg.freeze_fault_s)
    finally:
        run.pg.thaw()
    _event(run, "pg_freeze", t, frozen_s=run.cfg.freeze_fault_s, processes=n)
    log(f"Postgres frozen {run.cfg.freeze_fault_s:g}s ({n} processes SIGSTOPped, then SIGCONT)")


def full_disk(run: Any) -> None:
    t = time.time()
    written = run.pg.fill_disk()
    log(f"disk full: {written / 2**20:.1f} MB filler written, {run.pg.disk_free_bytes()} bytes left")
    try:
        run.stop.wait(run.cfg.full_disk_s)
    finally:
        run.pg.free_disk()
    _event(run, "disk_full", t, full_s=run.cfg.full_disk_s, filler_mb=round(written / 2**20, 1))
    log(f"disk freed after {run.cfg.full_disk_s:g}s")


def cut_broker(run: Any) -> None:
    w = run.workers[0]
    # Slower LLM answers (below the client's timeout) keep steps in flight across the cut.
    latency_ms = run.llm.latency_ms
    run.llm.latency_ms = int(700 * run.llm_timeout_s)
    deadline = time.monotonic() + 5  # cut it while it has steps in flight, if that comes soon
    while (held := run._leases_held(w)) == 0 and time.monotonic() < deadline and not run.stop.wait(0.02):
        pass
    t = time.time()
    run.proxy.cut()
    log(f"broker cut off from worker 0 ({run.cfg.cut_s:g}s of silence; it held {held} lease(s))")
    try:
        run.stop.wait(run.cfg.cut_s)
    finally:
        run.proxy.heal()
        run.llm.latency_ms = latency_ms
    _event(run, "broker_cut", t, cut_s=run.cfg.cut_s, worker_ids=w.memq_worker_ids(), leases_at_cut=held,
           proxy_connections=run.proxy.connections, opened_during_cut=run.proxy.cut_connections)
    log("broker proxy healed (connections reset)")


def slow_tail_on(run: Any) -> None:
    t = time.time()
    run.llm.set_faults({"slow": run.cfg.slow_rate}, seed=run.cfg.seed + 19, slow_s=run.cfg.slow_s)
    run.slow_on_at = t
    _event(run, "slow_tail_on", t, rate=run.cfg.slow_rate, slow_s=run.cfg.slow_s)
    log(f"slow LLM tail on: {run.cfg.slow_rate:.0%} of calls take {run.cfg.slow_s:g}s")


ACTIONS = {"freeze_redis": freeze_redis, "freeze_pg": freeze_pg, "full_disk": full_disk,
           "cut_broker": cut_broker, "slow_tail": slow_tail_on}


# ------------------------------------------------------------------- figures
def sends_during(attempts: list[tuple[float, float, str | None, str]], t0: float, t1: float) -> dict:
    """Send attempts that started in [t0, t1]: how many, the longest, their errors."""
    inside = [a for a in attempts if t0 <= a[0] <= t1]
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}
    for _, _, name, msg in inside:
        if name:
            errors[name] = errors.get(name, 0) + 1
            samples.setdefault(name, msg[:200])
    return {"attempts": len(inside), "ok": sum(a[2] is None for a in inside),
            "longest_attempt_s": round(max((a[1] for a in inside), default=0.0), 2),
            "errors": errors, "error_samples": samples}


def annotate_events(run: Any) -> None:
    """Add each fault window's send figures to its event."""
    for ev in run.events:
        if ev["event"] in ("redis_freeze", "pg_freeze", "disk_full", "broker_cut", "pg_restart"):
            ev["sends"] = sends_during(run.send_attempts, ev["at"], ev["at"] + ev["took_s"])


def cut_report(run: Any) -> dict[str, Any] | None:
    """What the cut-off worker committed while cut off, and afterwards, from the step journal."""
    ev = next((e for e in run.events if e["event"] == "broker_cut"), None)
    if ev is None:
        return None
    ids, t0, t1 = ev["worker_ids"], ev["at"], ev["at"] + ev["took_s"]
    with psycopg.connect(run.db.url, connect_timeout=5) as conn:
        during, outcomes = conn.execute(
            "SELECT count(*), array_agg(DISTINCT outcome) FROM steps WHERE worker = ANY(%s) "
            "AND finished_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)", (ids, t0, t1)).fetchone()
        after = conn.execute(
            "SELECT count(*) FROM steps WHERE worker = ANY(%s) AND finished_at > to_timestamp(%s)",
            (ids, t1)).fetchone()[0]
    return {"cut_worker_steps_during_cut": during, "outcomes": outcomes or [],
            "cut_worker_steps_after_heal": after}


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2)


def slow_tail_report(run: Any, sends_end: float) -> dict[str, Any] | None:
    """Other agents (no call of theirs was slowed): runs finished per second and send->done
    latency before the slow tail (baseline window) and with it, in the same run."""
    if getattr(run, "slow_on_at", None) is None:
        return None
    faults = run.llm.faults()
    hit_texts = set(faults.get("slow_messages", []))
    hit_agents = {t.split(" ", 1)[0] for t in hit_texts}  # "agent-<i> msg-<j>"
    on, start = run.slow_on_at, run.sends_started_at
    with psycopg.connect(run.db.url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT r.created_at, r.finished_at, (SELECT event->>'message' FROM inbox i WHERE i.run_id = r.id "
            "LIMIT 1) FROM runs r WHERE r.finished_at IS NOT NULL").fetchall()
    windows: dict[str, dict[str, Any]] = {}
    for name, (a, b) in {"baseline": (start, on), "slow_tail": (on, sends_end)}.items():
        lat = [(f - c).total_seconds() for c, f, text in rows
               if text and text.split(" ", 1)[0] not in hit_agents and a <= c.timestamp() < b]
        windows[name] = {"window_s": round(b - a, 1), "runs": len(lat),
                         "runs_per_s": round(len(lat) / max(b - a, 1e-9), 2),
                         "latency_p50_s": _pct(lat, 0.5), "latency_p99_s": _pct(lat, 0.99),
                         "latency_max_s": _pct(lat, 1.0)}
    return {"slow_calls": faults.get("counts", {}).get("slow", 0), "agents_hit": len(hit_agents),
            "other_agents": run.cfg.agents - len(hit_agents), **windows}


def doorbell_redeliveries(log_dir: Path) -> dict[str, int]:
    """Doorbells (task ids) a worker received more than once, from the workers' logs, and what
    their last delivery did: a redelivered doorbell must only ever be a wake-up."""
    received: dict[str, int] = {}
    outcome: dict[str, str] = {}
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            m = _TASK.search(line)
            if not m:
                continue
            tid, what = m.group(1), m.group(2)
            if what == "received":
                received[tid] = received.get(tid, 0) + 1
            elif what.startswith("succeeded"):
                r = _REASON.search(line)
                outcome[tid] = ("ran" if "'ran': True" in line else r.group(1) if r else "?")
    again = [t for t, n in received.items() if n > 1]
    out = {"doorbells": len(received), "redelivered": len(again)}
    for t in again:
        key = f"redelivered_{outcome.get(t, 'unfinished')}"
        out[key] = out.get(key, 0) + 1
    return out


_TASK = re.compile(r"Task memq\.step\[([0-9a-f-]{36})\] (received|succeeded)")
_REASON = re.compile(r"'reason': '([a-z_]+)'")
