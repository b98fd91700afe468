"""Section `api`: `memq serve` measured from HTTP clients, beside same-run baselines.

- one-step blocking `messages.create`, p50/p95 (httpx, one agent, sequential), beside a
  bare FastAPI echo on uvicorn and the same send through the Python client in-process;
- 20 agents × 10 messages from 20 concurrent clients (msg/s), beside the worker alone
  (the same 200 messages committed at once and rung: the ceiling one worker sets);
- the serve process's CPU per message (/proc), beside the bare echo's CPU per request;
- `memq serve` RSS idle, beside the bare echo's;
- the same send through the CLI (`memq send --wait`), for contrast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks.env import WorkerProc, cpu_s, median, percentile, rss_mb
from benchmarks.harness import FINISHED, Bench

S = "5 api"
AGENTS, PER_AGENT = 20, 10


class HttpProc(WorkerProc):
    """A server subprocess on a free port, up when GET /healthz answers 200."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__([*cmd, "--port", str(self.port)], env, log_path)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited:\n{self.tail(2000)}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cmd} not up in 60 s")
            time.sleep(0.05)
        self.ready_s = time.perf_counter() - self.spawned


@contextlib.contextmanager
def _spied(b: Bench, pid: int, name: str) -> Iterator[None]:
    """py-spy record (CPU: the GIL holder) of `pid` while the block runs (only with --profile DIR)."""
    out_dir: Path | None = getattr(b, "profile_dir", None)
    spy = Path(sys.executable).parent / "py-spy"
    if out_dir is None or not spy.exists():
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--rate", "250", "--gil", "--format", "raw",
                             "--output", str(out_dir / f"{name}.cpu.collapsed"), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def _timed(fn: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _hammer(url: str, headers: dict[str, str], jobs: list[tuple[str, dict[str, Any]]], clients: int) -> float:
    """POST every (path, body) from `clients` concurrent clients, each in order; seconds taken."""

    async def main() -> float:
        queues = [jobs[i::clients] for i in range(clients)]
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:
            async def one(mine: list[tuple[str, dict[str, Any]]]) -> None:
                for path, body in mine:
                    r = await http.post(path, json=body)
                    if r.status_code != 200:
                        raise RuntimeError(f"{path}: HTTP {r.status_code} {r.text[:300]}")

            t0 = time.perf_counter()
            await asyncio.gather(*(one(q) for q in queues))
            return time.perf_counter() - t0

    return asyncio.run(main())


def _worker_alone(b: Bench, agents: list[str]) -> float:
    """The same 20 × 10 messages committed at once and rung: seconds until every run finished."""
    from storage import repository as repo

    run_ids = []
    with b.client.rt.db.transaction() as s:
        for i in range(PER_AGENT):
            for a in agents:
                run, _ = repo.enqueue_message(s, a, f"worker-alone {i}", max_chars=b.settings.max_message_chars)
                run_ids.append(run.id)
    t0 = time.perf_counter()
    for a in agents:
        b.client.doorbell.ring(a, "interactive")
    deadline = time.monotonic() + 180
    while b.db.query("SELECT count(*) FROM runs WHERE id = ANY(%s) AND status = ANY(%s)",
                     (run_ids, list(FINISHED)))[0][0] < len(run_ids):
        if time.monotonic() > deadline:
            raise TimeoutError("worker-alone runs did not finish in 180 s")
        time.sleep(0.005)
    return time.perf_counter() - t0


def api(b: Bench) -> dict[str, Any]:
    reps = 40 if b.quick else 100
    out: dict[str, Any] = {}
    key = json.loads(subprocess.run(b.memq_cli() + ["key", "create", "--tenant", "bench", "--json"],
                                    env=b.memq_env, capture_output=True, text=True, check=True).stdout)["key"]
    headers = {"Authorization": f"Bearer {key}"}
    serve_args = getattr(b, "serve_args", [])
    serve = HttpProc([sys.executable, "-m", "memq.cli.main", "serve", *serve_args], b.memq_env, b.tmp / "serve.log")
    bare = HttpProc([sys.executable, "-m", "benchmarks.bare_api"], b.memq_env, b.tmp / "bare-api.log")
    try:
        time.sleep(1.0)
        out["serve_ready_s"], out["bare_ready_s"] = serve.ready_s, bare.ready_s
        out["serve_rss_idle_mb"], out["bare_rss_idle_mb"] = rss_mb(serve.pid), rss_mb(bare.pid)
        with httpx.Client(base_url=serve.url, headers=headers, timeout=120) as http, \
                httpx.Client(base_url=bare.url, timeout=30) as bare_http:
            agent = http.post("/v1/agents/", json={"name": f"bench-api-{secrets.token_hex(3)}"}).json()["id"]
            path = f"/v1/agents/{agent}/messages"

            def send(i: int) -> None:
                r = http.post(path, json={"messages": [{"role": "user", "content": f"hello {i}"}]})
                if r.status_code != 200 or r.json()["stop_reason"]["stop_reason"] != "end_turn":
                    raise RuntimeError(f"blocking send: HTTP {r.status_code} {r.text[:300]}")

            _timed(send, 5)  # warm-up: connections, caches
            blocking = _timed(send, reps)
            echo = _timed(lambda i: bare_http.post("/echo", json={"messages": [{"role": "user", "content": "x"}]}),
                          reps)
            health = _timed(lambda i: http.get("/healthz"), reps)
            local_agent = b.new_agent("bench-api-local")
            inproc = [b.send_and_wait(local_agent.id, f"hello {i}", poll_s=0.001).wall_s * 1000 for i in range(reps)]
            out["blocking_ms"], out["echo_ms"], out["healthz_ms"], out["inprocess_ms"] = blocking, echo, health, inproc
            b.add(S, "blocking messages.create, one step: p50", median(blocking), "ms",
                  "bare FastAPI echo POST p50", median(echo),
                  f"p95 {percentile(blocking, 95):.1f} ms; /healthz of memq serve p50 {median(health):.2f} ms; "
                  f"Python client in-process send + 1-ms poll p50 {median(inproc):.1f} ms")
            b.add(S, "blocking messages.create, one step: p95", percentile(blocking, 95), "ms",
                  "Python client in-process p95", percentile(inproc, 95))

            agents = [http.post("/v1/agents/", json={"name": f"bench-tp-{i}-{secrets.token_hex(3)}"}).json()["id"]
                      for i in range(AGENTS)]
            jobs = [(f"/v1/agents/{a}/messages", {"messages": [{"role": "user", "content": f"m{i}"}]})
                    for i in range(PER_AGENT) for a in agents]
            # Ordered so that client k sends agent k's messages, one after another.
            cpu0, wcpu0 = cpu_s(serve.pid), cpu_s(b.worker.pid)
            with _spied(b, serve.pid, "api-serve"):
                elapsed = _hammer(serve.url, headers, jobs, AGENTS)
            serve_cpu_ms, worker_cpu_ms = (cpu_s(serve.pid) - cpu0) * 1000, (cpu_s(b.worker.pid) - wcpu0) * 1000
            n = len(jobs)
            alone_s = _worker_alone(b, [a.removeprefix("agent-") for a in agents])
            bare_cpu0 = cpu_s(bare.pid)
            _hammer(bare.url, {}, [("/echo", body) for _, body in jobs], AGENTS)
            bare_cpu_ms = (cpu_s(bare.pid) - bare_cpu0) * 1000
            out.update(throughput_msg_s=n / elapsed, worker_alone_msg_s=n / alone_s,
                       serve_cpu_ms_per_msg=serve_cpu_ms / n, worker_cpu_ms_per_msg=worker_cpu_ms / n,
                       bare_cpu_ms_per_req=bare_cpu_ms / n)
            b.add(S, f"{AGENTS} agents × {PER_AGENT} messages, {AGENTS} concurrent HTTP clients", n / elapsed,
                  "msg/s", "the worker alone (same 200 messages committed at once)", n / alone_s,
                  f"{elapsed:.2f} s; worker CPU {worker_cpu_ms / n:.1f} ms/msg "
                  f"({worker_cpu_ms / 1000 / elapsed * 100:.0f} % of a core)")
            b.add(S, "memq serve CPU per message (during the 20 × 10)", serve_cpu_ms / n, "ms",
                  "bare FastAPI echo CPU per request", bare_cpu_ms / n)
            time.sleep(0.5)
            out["serve_rss_after_mb"] = rss_mb(serve.pid)
            b.add(S, "memq serve RSS idle", out["serve_rss_idle_mb"], "MiB", "bare FastAPI on uvicorn",
                  out["bare_rss_idle_mb"], f"after the 20 × 10: {out['serve_rss_after_mb']:.0f} MiB; "
                  f"up in {serve.ready_s:.2f} s (bare {bare.ready_s:.2f} s)")
        out.update(_cli_contrast(b, 5 if b.quick else 10, out["throughput_msg_s"]))
    finally:
        serve.stop()
        bare.stop()
    return out


def _cli_contrast(b: Bench, reps: int, http_msg_s: float) -> dict[str, Any]:
    """`memq send --wait --json`: one after another, and 20 at once (one message per agent)."""
    memq = b.memq_cli()
    agent = b.new_agent("bench-api-cli")
    walls = [b.time_cmd(memq + ["send", agent.id, f"cli {i}", "--wait", "--json"], env=b.memq_env)[0] * 1000
             for i in range(reps)]
    pys = [b.time_cmd([sys.executable, "-c", "pass"])[0] * 1000 for _ in range(reps)]
    agents = [b.new_agent("bench-api-cli-tp").id for _ in range(AGENTS)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(memq + ["send", a, "cli at once", "--wait", "--json"], env=b.memq_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a in agents]
    codes = [p.wait(timeout=300) for p in procs]
    at_once_s = time.perf_counter() - t0
    b.add(S, "CLI `memq send --wait --json`, one step: p50", median(walls), "ms", "`python -c pass`", median(pys),
          f"p95 {percentile(walls, 95):.0f} ms")
    b.add(S, f"CLI: {AGENTS} `memq send --wait` at once, one message each", AGENTS / at_once_s, "msg/s",
          "the 20 × 10 over HTTP above", http_msg_s, f"{at_once_s:.1f} s; exit codes {sorted(set(codes))}")
    return {"cli_send_wait_ms": walls, "python_pass_ms": pys, "cli_at_once_s": at_once_s}
