"""The four benchmark sections. Each adds rows (figure + baseline) to the Bench and
returns its detailed results for the JSON file."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx

from benchmarks.env import bare_worker, cpu_s, mean, median, percentile, rss_mb
from benchmarks.harness import FINISHED, WORKER_CONCURRENCY, Bench

CHAIN = 40
HEARTBEAT_FOREVER = {"tool": "send_message", "args": {"message": "x", "request_heartbeat": True}}
THROUGHPUT_LATENCY_MS = 1000


# -- optional py-spy profile of the worker ---------------------------------------------

@contextlib.contextmanager
def profiled(b: Bench, name: str) -> Iterator[None]:
    """py-spy record of the memq worker while the block runs (only with --profile DIR)."""
    out_dir: Path | None = getattr(b, "profile_dir", None)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if out_dir is None or b.worker is None or not Path(spy).exists():
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    # cpu: only the thread holding the GIL is sampled (where the Python CPU goes);
    # wall: every thread, idle or not (where the time goes, waits included).
    mode = getattr(b, "profile_mode", "cpu")
    flags = ["--gil"] if mode == "cpu" else ["--idle"]
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(b.worker.pid), "--rate", "250", "--threads", *flags,
         "--format", "raw", "--output", str(out_dir / f"{name}.{mode}.collapsed"), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- section 1: step overhead ----------------------------------------------------------

def bare_baseline(b: Bench, events: bool, hops: int = 200, repeats: int = 3) -> dict[str, Any]:
    """A bare Celery task re-enqueuing itself `hops` times on the same broker (cached)."""
    cache: dict = b.results.setdefault("_bare", {})
    if events in cache:
        return cache[events]
    import redis
    from celery import Celery

    from benchmarks.bare_celery import QUEUE, TASK

    w = bare_worker(b.redis_url, b.tmp / f"bare-events{int(events)}.log", WORKER_CONCURRENCY, events)
    producer = Celery("bench_driver", broker=b.redis_url, set_as_current=False)
    producer.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)
    r = redis.Redis.from_url(b.redis_url)
    try:
        ready_s = w.wait_ready()
        time.sleep(0.3)
        rss_ready = rss_mb(w.pid)

        def chain(n: int) -> float:
            key = f"bench:bare:{secrets.token_hex(4)}"
            t0 = time.perf_counter()
            producer.send_task(TASK, args=[n, key], queue=QUEUE)
            if r.blpop([key], timeout=60) is None:
                raise TimeoutError(f"bare chain of {n} hops did not finish:\n{w.tail()}")
            return time.perf_counter() - t0

        chain(20)  # warm-up: connections, thread pool
        cpu0 = cpu_s(w.pid)
        walls = [chain(hops) for _ in range(repeats)]
        cpu_ms_per_hop = (cpu_s(w.pid) - cpu0) * 1000 / (repeats * (hops + 1))
        per_hop = [wall * 1000 / (hops + 1) for wall in walls]  # hop(n)..hop(0): n+1 tasks
        facts = {
            "events": events,
            "hops": hops,
            "ms_per_hop_runs": per_hop,
            "ms_per_hop": median(per_hop),
            "cpu_ms_per_hop": cpu_ms_per_hop,
            "ready_s": ready_s,
            "rss_ready_mb": rss_ready,
            "rss_after_mb": rss_mb(w.pid),
        }
    finally:
        w.stop()
        producer.close()
        r.close()
    cache[events] = facts
    return facts


def llm_client_baseline(b: Bench, body: dict[str, Any], reps: int = 50, sdk: bool = True) -> dict[str, Any]:
    """memq's LLMClient in this process vs plain httpx, same 0-ms server, same body."""
    from workers.llm import LLMClient, resolve_route

    messages, tools = body["messages"], body["tools"]
    settings = b.settings.model_copy(update={"llm_max_retries": 0})
    client = LLMClient(settings)

    def timed(fn, n: int) -> tuple[list[float], list[float]]:
        walls, cpus = [], []
        for _ in range(n):
            t, c = time.perf_counter(), time.process_time()
            fn()
            walls.append((time.perf_counter() - t) * 1000)
            cpus.append((time.process_time() - c) * 1000)
        return walls, cpus

    t0 = time.perf_counter()
    client.complete(messages, tools)
    first_ms = (time.perf_counter() - t0) * 1000  # includes `import litellm`
    timed(lambda: client.complete(messages, tools), 3)
    llm_wall, llm_cpu = timed(lambda: client.complete(messages, tools), reps)

    url = b.llm.url + "/chat/completions"
    headers = {"Authorization": f"Bearer {settings.llm_api_key}"}
    with httpx.Client(timeout=30, headers=headers) as h:
        timed(lambda: h.post(url, json=body).json(), 3)
        ka_wall, ka_cpu = timed(lambda: h.post(url, json=body).json(), reps)
    timed(lambda: httpx.post(url, json=body, headers=headers, timeout=30).json(), 3)
    post_wall, post_cpu = timed(lambda: httpx.post(url, json=body, headers=headers, timeout=30).json(), reps)

    # For contrast (DESIGN §5): the route litellm takes with plain `openai/…` (the OpenAI SDK).
    litellm = client.litellm
    sdk_kwargs = dict(model=settings.llm_model, api_base=settings.llm_api_base, api_key=settings.llm_api_key,
                      messages=messages, tools=tools, timeout=30, max_tokens=settings.llm_max_tokens,
                      num_retries=0)
    sdk_wall: list[float] = []
    sdk_cpu: list[float] = []
    if sdk:
        try:
            timed(lambda: litellm.completion(**sdk_kwargs), 2)
            sdk_wall, sdk_cpu = timed(lambda: litellm.completion(**sdk_kwargs), max(5, reps // 3))
        except Exception as exc:  # noqa: BLE001 - a contrast figure only
            print(f"openai-SDK route contrast skipped: {type(exc).__name__}: {exc}")

    return {
        "prompt_messages": len(messages),
        "prompt_bytes": len(json.dumps(body)),
        "route": resolve_route(settings.llm_model or "", settings.llm_api_base),
        "first_call_ms": first_ms,
        "llm_client_ms": median(llm_wall),
        "llm_client_cpu_ms": median(llm_cpu),
        "httpx_client_ms": median(ka_wall),
        "httpx_client_cpu_ms": median(ka_cpu),
        "httpx_post_ms": median(post_wall),
        "httpx_post_cpu_ms": median(post_cpu),
        "litellm_openai_sdk_ms": median(sdk_wall),
        "litellm_openai_sdk_cpu_ms": median(sdk_cpu),
        "reps": reps,
    }


def postgres_baseline(b: Bench, reps: int = 200) -> dict[str, Any]:
    """Postgres primitives on the bench database: a round trip and a fsync'd write commit."""
    import psycopg

    with psycopg.connect(b.db.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_scratch (id int PRIMARY KEY, v bigint)")
        conn.execute("INSERT INTO bench_scratch VALUES (1, 0) ON CONFLICT DO NOTHING")
        rtt = []
        for _ in range(reps):
            t = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            rtt.append((time.perf_counter() - t) * 1000)
    with psycopg.connect(b.db.url) as conn:  # transactions: BEGIN + UPDATE + COMMIT
        commit = []
        for _ in range(reps // 2):
            t = time.perf_counter()
            conn.execute("UPDATE bench_scratch SET v = v + 1 WHERE id = 1")
            conn.commit()
            commit.append((time.perf_counter() - t) * 1000)
    return {"rtt_ms": median(rtt), "rtt_ms_p95": percentile(rtt, 95),
            "write_txn_ms": median(commit), "write_txn_ms_p95": percentile(commit, 95)}


def inprocess_chain(b: Bench) -> dict[str, Any]:
    """The same 40-step chain with run_step called in this process: no Celery, no broker.

    SQLAlchemy events count what each step sends to Postgres.
    """
    from sqlalchemy import event

    import workers.step as step_module
    from storage import repository as repo

    rt = b.client.rt
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

    marks: list[tuple[str, float]] = []
    undo = _time_phases(rt, marks)
    engine = rt.db.engine
    event.listen(engine, "before_cursor_execute", on_exec)
    event.listen(engine, "begin", on_begin)
    event.listen(engine.pool, "checkout", on_checkout)
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
        event.remove(engine, "before_cursor_execute", on_exec)
        event.remove(engine, "begin", on_begin)
        event.remove(engine.pool, "checkout", on_checkout)
    status = b.run_state(run.id)[0]
    if status != "chain_capped" or steps != CHAIN:
        raise RuntimeError(f"in-process chain ended {status} after {steps} steps")
    rows = b.journal(run_ids=[run.id])
    per = {k: v / steps for k, v in counts.items()}
    pre_ping = bool(getattr(engine.pool, "_pre_ping", False))
    # Round trips: each statement, plus BEGIN and COMMIT per transaction, plus the
    # pool's pre-ping (a SELECT 1) per checkout when it is on.
    per["round_trips"] = per.get("statements", 0) + 2 * per.get("transactions", 0) + (
        per.get("checkouts", 0) if pre_ping else 0)
    return {"ms_per_step": wall * 1000 / steps, "cpu_ms_per_step": cpu * 1000 / steps, "steps": steps, "in_step_ms_mean": mean(x["in_step_ms"] for x in rows),
            "per_step": per, "pool_pre_ping": pre_ping, "phases_ms": _phases(marks, steps)}


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


def _time_phases(rt: Any, marks: list[tuple[str, float]]):
    """Wrap the step's functions to record (event, time); returns the undo callable."""
    import importlib

    saved: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attr: str, label: str) -> None:
        fn = getattr(owner, attr, None)
        if fn is None:
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            marks.append((label + ">", time.perf_counter()))
            try:
                return fn(*args, **kwargs)
            finally:
                marks.append((label + "<", time.perf_counter()))

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


def _phases(marks: list[tuple[str, float]], steps: int) -> dict[str, float]:
    """Mean ms per step of each phase, from the enter/exit marks of one chain."""
    spans: Counter[str] = Counter()
    last: dict[str, float] = {}
    prev_label, prev_t = None, None
    for label, t in marks:
        last[label] = t
        if prev_label is not None and prev_t is not None:
            # The interval between two marks belongs to the phase it lies in.
            key = {
                ("run_step>", "_load_turn>"): "1 lease acquire (txn)",
                ("_load_turn>", "_load_turn<"): "2 load turn (txn)",
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


def overhead(b: Bench) -> dict[str, Any]:
    b.llm.set_latency(0)
    runs, rows = [], []
    last_agent = None
    cpu0 = cpu_s(b.worker.pid)
    with profiled(b, "overhead"):
        for _ in range(3):
            agent = b.new_agent("bench-overhead")
            b.llm.set_default(agent.id, HEARTBEAT_FOREVER)
            r = b.send_and_wait(agent.id, "go", timeout_s=180)
            if r.status != "chain_capped" or r.steps != CHAIN:
                raise RuntimeError(f"overhead run ended {r.status} after {r.steps} steps "
                                   f"(expected chain_capped after {CHAIN}); worker log:\n{b.worker.tail()}")
            runs.append(r)
            rows.extend(b.journal(run_ids=[r.run_id]))
            last_agent = agent
    worker_cpu_ms = (cpu_s(b.worker.pid) - cpu0) * 1000 / sum(r.steps for r in runs)
    ms_per_step_runs = [r.wall_s * 1000 / r.steps for r in runs]
    ms_per_step = median(ms_per_step_runs)
    db_ms_per_step = median(r.db_span_s * 1000 / r.steps for r in runs if r.db_span_s)
    in_step = mean(x["in_step_ms"] for x in rows)
    llm_ms = mean(x["llm_ms"] for x in rows)
    # Gap between one step's finished_at and the next step's started_at within a run:
    # commit + release + re-check + ring + broker hop + lease + load.
    gaps = []
    for r in runs:
        js = sorted((x for x in rows if x["run_id"] == r.run_id), key=lambda x: x["step_no"])
        gaps.extend((b2["started_s"] - a["finished_s"]) * 1000 for a, b2 in zip(js, js[1:]))
    # The longest step prompt of the chain (the last step's, ~120 messages).
    body = max((r for r in b.llm.requests(last_agent.id) if r.get("tools")), key=lambda r: len(r["messages"]))
    repeats = 2 if b.quick else 3
    bare_ev = bare_baseline(b, events=True, repeats=repeats)
    # --quick leaves out the two contrast figures (events off, the OpenAI-SDK route).
    nan = float("nan")
    bare_plain = ({"ms_per_hop": nan, "cpu_ms_per_hop": nan} if b.quick
                  else bare_baseline(b, events=False, repeats=repeats))
    llmb = llm_client_baseline(b, body, reps=20 if b.quick else 50, sdk=not b.quick)
    pg = postgres_baseline(b, reps=100 if b.quick else 200)
    inproc = inprocess_chain(b)
    per = inproc["per_step"]
    write_txns = 3  # lease, commit, release: the transactions that write (fsync on commit)
    db_floor = per["round_trips"] * pg["rtt_ms"] + write_txns * max(0.0, pg["write_txn_ms"] - 3 * pg["rtt_ms"])

    S = "1 step overhead"
    b.add(S, f"ms/step, {CHAIN}-step heartbeat chain, 0-ms LLM (median of 3)", ms_per_step, "ms",
          "bare Celery hop (memq's conf, task events on)", bare_ev["ms_per_hop"],
          f"runs: {', '.join(f'{x:.1f}' for x in ms_per_step_runs)} ms")
    if not b.quick:
        b.add(S, "ms/step (same runs)", ms_per_step, "ms", "bare Celery hop (task events off)",
              bare_plain["ms_per_hop"])
    b.add(S, "worker CPU per step (/proc utime+stime, all threads)", worker_cpu_ms, "ms",
          "bare Celery worker CPU per hop (events on)", bare_ev["cpu_ms_per_hop"],
          "DESIGN I8: single-digit ms, LLM client included")
    b.add(S, "worker CPU per step (above)", worker_cpu_ms, "ms",
          "run_step in-process, CPU per step (no Celery)", inproc["cpu_ms_per_step"],
          "the difference is Celery's share: receive, ack, events, ring, logging")
    b.add(S, "in-step time (journal finished_at − started_at), mean", in_step, "ms",
          "LLM latency in the step, mean", llm_ms,
          "in-step = compile + LLM call + tool; lease/load/commit/ring are outside")
    b.add(S, "LLM latency in the step (journal llm_latency_ms), mean", llm_ms, "ms",
          "LLMClient.complete in-process, median", llmb["llm_client_ms"],
          f"prompt grew to {max(x['prompt_messages'] for x in rows)} messages")
    b.add(S, "outside the step: ms/step − in-step", ms_per_step - in_step, "ms",
          "bare Celery hop (task events on)", bare_ev["ms_per_hop"],
          f"step→next-step gap p50 {percentile(gaps, 50):.1f} / p95 {percentile(gaps, 95):.1f} ms")
    b.add(S, "run_step called in-process (no Celery, no broker), ms/step", inproc["ms_per_step"], "ms",
          "memq worker ms/step (above)", ms_per_step,
          "phases: " + ", ".join(f"{k[2:]} {v:.1f}" for k, v in inproc["phases_ms"].items()) + " ms")
    b.add(S, "Postgres floor per step: round trips × RTT + 3 write commits", db_floor, "ms",
          "run_step in-process ms/step", inproc["ms_per_step"],
          f"{per['round_trips']:.0f} round trips/step ({per.get('statements', 0):.0f} statements, "
          f"{per.get('transactions', 0):.0f} transactions, {per.get('checkouts', 0):.0f} pre-pinged "
          f"checkouts); RTT {pg['rtt_ms']:.2f} ms, write txn {pg['write_txn_ms']:.2f} ms")
    b.add(S, f"LLMClient.complete, {llmb['prompt_messages']}-msg prompt, wall (median of {llmb['reps']})",
          llmb["llm_client_ms"], "ms", "httpx.Client.post (keep-alive), same body", llmb["httpx_client_ms"],
          f"route {llmb['route']}; {llmb['prompt_bytes'] / 1024:.0f} KiB body; one-shot httpx.post "
          f"{llmb['httpx_post_ms']:.1f} ms (new client + SSL context per call)")
    b.add(S, "LLMClient.complete, CPU of the calling process", llmb["llm_client_cpu_ms"], "ms",
          "httpx.Client.post (keep-alive), CPU", llmb["httpx_client_cpu_ms"])
    if llmb["litellm_openai_sdk_ms"] == llmb["litellm_openai_sdk_ms"]:  # not NaN: measured
        b.add(S, "litellm `openai/` route (OpenAI SDK), wall — contrast", llmb["litellm_openai_sdk_ms"], "ms",
              "memq's LLMClient route", llmb["llm_client_ms"], "what a step would pay on the SDK route")
    return {
        "chain": CHAIN,
        "runs": [r.__dict__ for r in runs],
        "memq_ms_per_step": ms_per_step,
        "memq_ms_per_step_runs": ms_per_step_runs,
        "memq_ms_per_step_db_timestamps": db_ms_per_step,
        "in_step_ms_mean": in_step,
        "llm_latency_ms_mean": llm_ms,
        "worker_cpu_ms_per_step": worker_cpu_ms,
        "bare_cpu_ms_per_hop": bare_ev["cpu_ms_per_hop"],
        "outside_step_ms": ms_per_step - in_step,
        "gap_ms_p50": percentile(gaps, 50),
        "gap_ms_p95": percentile(gaps, 95),
        "prompt_messages_max": max(x["prompt_messages"] for x in rows),
        "bare_hop_ms": bare_ev["ms_per_hop"],
        "bare_hop_ms_no_events": bare_plain["ms_per_hop"],
        "ratio": ms_per_step / bare_ev["ms_per_hop"],
        "ratio_no_events": ms_per_step / bare_plain["ms_per_hop"],
        "bare": {"events_on": bare_ev, "events_off": bare_plain},
        "llm_client": llmb,
        "postgres": pg,
        "inprocess": inproc,
        "db_floor_ms": db_floor,
        "llm_client_ms": llmb["llm_client_ms"],
        "httpx_ms": llmb["httpx_post_ms"],
        "httpx_keepalive_ms": llmb["httpx_client_ms"],
    }


# -- section 2: in-flight throughput ---------------------------------------------------

def throughput(b: Bench) -> dict[str, Any]:
    from storage import repository as repo

    sizes = [10, 100] if b.quick else [10, 100, 500]
    b.llm.set_latency(THROUGHPUT_LATENCY_MS)
    out: dict[str, Any] = {"llm_latency_ms": THROUGHPUT_LATENCY_MS, "worker_concurrency": WORKER_CONCURRENCY}
    S = "2 throughput"
    try:
        for n in sizes:
            agents = [b.new_agent(f"bench-tp{n}") for _ in range(n)]
            run_ids = []
            # The messages are committed first, then all doorbells ring in a burst, so the
            # figure is the worker's, not the driver's send loop.
            with b.client.rt.db.transaction() as s:
                for a in agents:
                    run, _ = repo.enqueue_message(s, a.id, f"hello {a.name}",
                                                  max_chars=b.settings.max_message_chars)
                    run_ids.append(run.id)
            cpu0 = cpu_s(b.worker.pid) if b.worker else float("nan")
            with profiled(b, f"throughput{n}"):
                t0 = time.perf_counter()
                for a in agents:
                    b.client.doorbell.ring(a.id, "interactive")
                ring_s = time.perf_counter() - t0
                deadline = time.monotonic() + 180
                while True:
                    done = b.db.query(
                        "SELECT count(*) FROM runs WHERE id = ANY(%s) AND status = ANY(%s)",
                        (run_ids, list(FINISHED)),
                    )[0][0]
                    if done == n:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{n} agents: only {done} runs finished in 180 s")
                    time.sleep(0.01)
                elapsed = time.perf_counter() - t0
            worker_cpu_ms = (cpu_s(b.worker.pid) - cpu0) * 1000 if b.worker else float("nan")
            statuses = Counter(
                row[0] for row in b.db.query("SELECT status FROM runs WHERE id = ANY(%s)", (run_ids,))
            )
            j = b.journal(run_ids=run_ids)
            steps = len(j)
            first_start = min(x["started_s"] for x in j)
            last_start = max(x["started_s"] for x in j)
            res = {
                "agents": n,
                "steps": steps,
                "elapsed_s": elapsed,
                "steps_per_s": steps / elapsed,
                "ideal_steps_per_s": n / (THROUGHPUT_LATENCY_MS / 1000),
                "ring_s": ring_s,
                "statuses": dict(statuses),
                "llm_latency_ms_mean": mean(x["llm_ms"] for x in j),
                "llm_latency_ms_max": max(x["llm_ms"] for x in j),
                "in_step_ms_mean": mean(x["in_step_ms"] for x in j),
                "step_start_spread_s": last_start - first_start,
                "llm_attempts_total": sum(x["llm_attempts"] for x in j),
                "worker_cpu_ms_per_step": worker_cpu_ms / max(1, steps),
                "worker_cpu_utilisation": worker_cpu_ms / 1000 / elapsed,
            }
            out[str(n)] = res
            note = (f"rings {ring_s * 1000:.0f} ms; LLM mean {res['llm_latency_ms_mean']:.0f} / max "
                    f"{res['llm_latency_ms_max']:.0f} ms; starts spread {res['step_start_spread_s']:.2f} s; "
                    f"worker CPU {res['worker_cpu_ms_per_step']:.1f} ms/step "
                    f"({100 * res['worker_cpu_utilisation']:.0f} % of a core)")
            if statuses.get("done", 0) != n:
                note += f"; statuses {dict(statuses)}"
            b.add(S, f"{n} agents × 1 step, {THROUGHPUT_LATENCY_MS}-ms LLM: steps/s", res["steps_per_s"],
                  "steps/s", f"ideal ({n} agents / 1 s)", res["ideal_steps_per_s"], note)
            b.add(S, f"{n} agents: elapsed (first ring → last run done)", elapsed, "s",
                  "ideal (one LLM latency)", THROUGHPUT_LATENCY_MS / 1000)
            if n == max(sizes) and b.worker is not None:
                time.sleep(0.3)
                b.worker_facts[f"rss_after_{n}_mb"] = rss_mb(b.worker.pid)
                b.worker_facts["rss_after_load_agents"] = n
    finally:
        b.llm.set_latency(0)
    return out


# -- section 3: history scaling --------------------------------------------------------

KEEP_IN_CONTEXT = 9  # three (user, assistant, tool) triples


def _message_tokens(b: Bench, msg: dict[str, Any]) -> int:
    """Tokens of one message as the worker counts them (workers.tokens), else ~chars/4."""
    counter = getattr(b.client.rt, "counter", None)
    if counter is not None:
        try:
            return int(counter.message(b.settings.llm_model or "gpt-4o-mini", msg))
        except Exception:  # noqa: BLE001 - an estimate is fine for history rows
            pass
    return 4 + sum(len(str(v)) for v in msg.values()) // 4


def insert_history(b: Bench, agent_id: str, n: int) -> dict[str, Any]:
    """COPY n messages straight into `messages`; only the last KEEP_IN_CONTEXT stay in context."""
    t0 = time.perf_counter()
    columns = {r[0]: r for r in b.db.query(
        "SELECT column_name, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_name = 'messages' AND table_schema = current_schema()")}
    cols = ["agent_id", "run_id", "step_no", "role", "content", "tool_calls", "tool_call_id", "created_at"]
    if "tokens" in columns:
        cols.append("tokens")
    required = [c for c, (_, nullable, default) in columns.items()
                if nullable == "NO" and default is None and c not in cols]
    if required:
        raise RuntimeError(f"messages has required columns the history loader does not fill: {required}")
    start = datetime.now(timezone.utc) - timedelta(days=30)
    call_id0 = f"call_{agent_id[:8]}{0:010d}"
    user0 = json.dumps({"type": "user_message", "message": "Old message number 0: how was the weather "
                        "on the trip we talked about?", "time": start.isoformat()})
    args0 = json.dumps({"message": "Reply 0: it was sunny most days, as you said.", "request_heartbeat": False})
    calls0 = [{"id": call_id0, "type": "function", "function": {"name": "send_message", "arguments": args0}}]
    tool0 = json.dumps({"status": "OK", "message": "None", "time": start.isoformat()})
    # Token counts per kind of message, counted once (the rows differ only in a number).
    tokens = [
        _message_tokens(b, {"role": "user", "content": user0}),
        _message_tokens(b, {"role": "assistant", "content": "The user asks about the trip again.",
                            "tool_calls": calls0}),
        _message_tokens(b, {"role": "tool", "tool_call_id": call_id0, "content": tool0}),
    ]
    conn = b.db.conn
    with conn.cursor() as cur, cur.copy(f"COPY messages ({', '.join(cols)}) FROM STDIN") as cp:
        for j in range(n):
            kind = (j - n) % 3  # 0 user, 1 assistant, 2 tool: the newest message is a tool result
            turn = j // 3
            at = start + timedelta(seconds=j)
            iso = at.isoformat().replace("+00:00", "Z")
            call_id = f"call_{agent_id[:8]}{turn:010d}"
            if kind == 0:
                content = json.dumps({"type": "user_message", "message": f"Old message number {turn}: "
                                      "how was the weather on the trip we talked about?", "time": iso})
                row = [agent_id, None, turn, "user", content, None, None, at]
            elif kind == 1:
                args = json.dumps({"message": f"Reply {turn}: it was sunny most days, as you said.",
                                   "request_heartbeat": False})
                calls = json.dumps([{"id": call_id, "type": "function",
                                     "function": {"name": "send_message", "arguments": args}}])
                row = [agent_id, None, turn, "assistant", "The user asks about the trip again.", calls, None, at]
            else:
                content = json.dumps({"status": "OK", "message": "None", "time": iso})
                row = [agent_id, None, turn, "tool", content, None, call_id, at]
            if "tokens" in cols:
                row.append(tokens[kind])
            cp.write_row(row)
    start_id = b.db.query(
        "SELECT min(id) FROM (SELECT id FROM messages WHERE agent_id = %s ORDER BY id DESC LIMIT %s) t",
        (agent_id, KEEP_IN_CONTEXT),
    )[0][0]
    b.db.query(
        "UPDATE agents SET message_count = message_count + %s, context_start_id = %s WHERE id = %s",
        (n, start_id, agent_id),
    )
    b.db.query("ANALYZE messages")
    return {"rows": n, "load_s": time.perf_counter() - t0, "context_start_id": start_id}


def history(b: Bench) -> dict[str, Any]:
    from storage import repository as repo

    big = 10_000 if b.quick else 100_000
    b.llm.set_latency(0)
    out: dict[str, Any] = {"in_context_history": KEEP_IN_CONTEXT}
    for n in (10, big):
        agent = b.new_agent(f"bench-hist{n}")
        load = insert_history(b, agent.id, n)
        runs = [b.send_and_wait(agent.id, f"question {i}") for i in range(10)]
        bad = [r.status for r in runs if r.status != "done"]
        if bad:
            raise RuntimeError(f"history {n}: runs ended {bad}")
        j = b.journal(agent_id=agent.id)
        q = []
        for _ in range(20):
            t = time.perf_counter()
            with b.client.rt.db.transaction() as s:
                repo.context_messages(s, agent.id, load["context_start_id"])
            q.append((time.perf_counter() - t) * 1000)
        plan = b.db.query(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM messages "
            "WHERE agent_id = %s AND id >= %s ORDER BY id",
            (agent.id, load["context_start_id"]),
        )[0][0][0]

        def scan(node: dict) -> dict:
            while "Plans" in node and not node.get("Index Name") and "Scan" not in node.get("Node Type", ""):
                node = node["Plans"][0]
            return node

        leaf = scan(plan["Plan"])
        out[str(n)] = {
            **load,
            "context_plan": {
                "node": leaf.get("Node Type"),
                "index": leaf.get("Index Name"),
                "rows": plan["Plan"].get("Actual Rows"),
                "shared_buffers": plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0),
                "execution_ms": plan.get("Execution Time"),
            },
            "step_ms_median": median(r.wall_s * 1000 for r in runs),
            "step_ms_runs": [r.wall_s * 1000 for r in runs],
            "in_step_ms_mean": mean(x["in_step_ms"] for x in j),
            "prompt_messages_first": j[0]["prompt_messages"],
            "prompt_messages_last": j[-1]["prompt_messages"],
            "context_query_ms_median": median(q),
        }
    small, large = out["10"], out[str(big)]
    out["big"] = big
    out["ratio"] = large["step_ms_median"] / small["step_ms_median"]
    S = "3 history"
    b.add(S, f"single step, {big:,} messages of history (median of 10)", large["step_ms_median"], "ms",
          "same, 10 messages of history", small["step_ms_median"],
          f"prompt {large['prompt_messages_first']}→{large['prompt_messages_last']} msgs both; "
          f"COPY of {big:,} rows {large['load_s']:.1f} s")
    b.add(S, "in-step time (journal), mean", large["in_step_ms_mean"], "ms", "same, 10 messages",
          small["in_step_ms_mean"])
    lp, sp = large["context_plan"], small["context_plan"]
    b.add(S, "context query (repo.context_messages), median of 20", large["context_query_ms_median"], "ms",
          "same, 10 messages", small["context_query_ms_median"],
          f"plan: {lp['node']} on {lp['index']}, {lp['rows']} rows, {lp['shared_buffers']} buffers "
          f"(10-msg agent: {sp['node']}, {sp['shared_buffers']} buffers)")
    return out


# -- section 4: start-up ---------------------------------------------------------------

def heaviest_imports(b: Bench, cmd: list[str], top: int = 8) -> list[tuple[str, float]]:
    """Packages a command imports, by the sum of their modules' own import time (-X importtime)."""
    env = dict(b.memq_env, PYTHONPROFILEIMPORTTIME="1")
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    totals: Counter[str] = Counter()
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us = int(parts[0].split(":")[1].strip())
        except (ValueError, IndexError):
            continue
        totals[parts[2].strip().split(".")[0]] += self_us / 1000
    return totals.most_common(top)


def startup(b: Bench) -> dict[str, Any]:
    memq = b.memq_cli()
    py = [b.time_cmd([sys.executable, "-c", "pass"])[0] * 1000 for _ in range(5)]
    helps = [b.time_cmd(memq + ["--help"])[0] * 1000 for _ in range(5)]
    agent = b.new_agent("bench-cli")
    sends = []
    for i in range(5):
        dt, stdout = b.time_cmd(memq + ["send", agent.id, f"cli message {i}", "--json"], env=b.memq_env)
        doc = json.loads(stdout)
        if doc.get("status") not in ("queued", "running", "done"):
            raise RuntimeError(f"memq send answered {doc}")
        sends.append(dt * 1000)
    imports = heaviest_imports(b, memq + ["send", agent.id, "import-time probe", "--json"])
    inproc = []
    for i in range(20):
        t = time.perf_counter()
        b.client.send(agent.id, f"in-process message {i}")
        inproc.append((time.perf_counter() - t) * 1000)
    bare = bare_baseline(b, events=True)
    wf = b.worker_facts
    S = "4 start-up"
    b.add(S, "`memq --help` wall (median of 5)", median(helps), "ms", "`python -c pass`", median(py))
    b.add(S, "`memq send ID TEXT --json` (no wait), median of 5", median(sends), "ms",
          "Client.send in-process, median of 20", median(inproc),
          "imports: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in imports[:5]))
    b.add(S, "worker ready (spawn → \" ready.\")", wf["ready_s"], "s", "bare Celery worker, same pool",
          bare["ready_s"])
    b.add(S, "worker's first step after \" ready.\"", wf["first_step_s"] * 1000, "ms",
          "warm single step (median)", wf["warm_step_s"] * 1000)
    b.add(S, "worker RSS idle, before the first step", wf["rss_ready_mb"], "MiB", "bare Celery worker idle",
          bare["rss_ready_mb"])
    b.add(S, "worker RSS idle, after warm-up (litellm loaded)", wf["rss_warm_mb"], "MiB",
          "bare Celery worker after 600 hops", bare["rss_after_mb"])
    load_key = next((k for k in wf if k.startswith("rss_after_") and k.endswith("_mb")), None)
    if load_key:
        b.add(S, f"worker RSS after the {wf['rss_after_load_agents']}-agent load", wf[load_key], "MiB",
              "same worker idle, after warm-up", wf["rss_warm_mb"])
    return {
        "python_c_pass_ms": median(py),
        "memq_help_ms": median(helps),
        "memq_help_ms_runs": helps,
        "memq_send_ms": median(sends),
        "memq_send_ms_runs": sends,
        "client_send_inprocess_ms": median(inproc),
        "memq_send_imports_ms": dict(imports),
        "worker": dict(wf),
        "bare_worker": {k: bare[k] for k in ("ready_s", "rss_ready_mb", "rss_after_mb")},
    }


SECTIONS = {
    "overhead": overhead,
    "throughput": throughput,
    "history": history,
    "startup": startup,
}
