"""Section 1's baselines: a bare Celery hop, the LLM client against plain httpx, and
Postgres primitives (a round trip, a write commit)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx

from benchmarks.env import bare_worker, cpu_s, median, percentile, rss_mb
from benchmarks.harness import WORKER_CONCURRENCY, Bench


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
