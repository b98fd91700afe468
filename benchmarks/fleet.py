"""Every machine: 1, 2 and 4 worker processes against one Postgres and one Redis.

    python -m benchmarks.fleet [--processes 1,2,4] [--agents 200] [--per-agent 10] [--latency-ms 200]
                               [--pgbouncer HOST:PORT] [--out FILE]

Each count runs the batch benchmark's workload (benchmarks/batch.py) on
`memq worker --processes N`, one after another in the same run, against a Redis
server of its own (so its command counter counts memq's commands alone) and a
fresh database on the shared Postgres. Read around the batch:

- steps/s, and worker CPU per step (the supervisor and its children);
- Postgres CPU: user + system time of the backends serving the benchmark's
  database, from /proc (per step, and as cores kept busy);
- commits per step: the database's ``pg_stat_database.xact_commit`` delta (the
  driver's own status polls, about 10 a second, are included);
- Redis commands per step: ``INFO stats`` ``total_commands_processed`` delta.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import redis

from benchmarks.batch import parse_processes, run
from benchmarks.env import cpu_s, loadavg

# Backends flush their statistics at most once a second, and an idle one only
# after pgstat's idle interval (10 s): wait that long before the last read.
PG_STATS_SETTLE_S = 11.0


def _backends(dbname: str) -> dict[int, float]:
    """pid -> CPU seconds of every Postgres backend connected to ``dbname``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if title.startswith("postgres: ") and f" {dbname} " in title:
                found[int(entry.name)] = cpu_s(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


class PostgresProbe:
    """Commits (pg_stat_database) and backend CPU (/proc) of the benchmark's database."""

    def _commits(self, bench) -> int:
        rows = bench.db.query("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (bench.db.name,))
        return int(rows[0][0])

    def start(self, bench) -> None:
        time.sleep(PG_STATS_SETTLE_S)  # the warm-up's commits land before the first read
        self.commits0 = self._commits(bench)
        self.cpu0 = _backends(bench.db.name)
        self.t0 = time.perf_counter()
        self.peak_connections = 0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, args=(bench.db.url, bench.db.name), daemon=True)
        self._sampler.start()

    def _sample(self, url: str, dbname: str) -> None:
        """The most connections the benchmark's database had open at once (every 0.25 s)."""
        with psycopg.connect(url, autocommit=True) as conn:
            while not self._done.wait(0.25):
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchone()[0]
                self.peak_connections = max(self.peak_connections, n)

    def stop(self, bench, steps: int) -> dict:
        self._done.set()
        self._sampler.join()
        cpu1 = _backends(bench.db.name)
        wall = time.perf_counter() - self.t0
        cpu = sum(v - self.cpu0.get(pid, 0.0) for pid, v in cpu1.items())
        time.sleep(PG_STATS_SETTLE_S)
        commits = self._commits(bench) - self.commits0
        return {"pg_backends": len(cpu1), "pg_peak_connections": self.peak_connections, "pg_cpu_s": cpu,
                "pg_cpu_ms_per_step": cpu * 1000 / steps, "pg_cores_busy": cpu / wall, "pg_commits": commits,
                "pg_commits_per_step": commits / steps}


class RedisProbe:
    """Commands the broker processed (the benchmark's own redis-server)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _count(self) -> int:
        r = redis.Redis.from_url(self.url)
        try:
            return int(r.info("stats")["total_commands_processed"])
        finally:
            r.close()

    def start(self, bench) -> None:
        self.n0 = self._count()

    def stop(self, bench, steps: int) -> dict:
        n = self._count() - self.n0
        return {"redis_commands": n, "redis_commands_per_step": n / steps}


class OwnRedis:
    """A redis-server of this benchmark's own on a free port, without persistence."""

    def __enter__(self) -> str:
        if shutil.which("redis-server") is None:
            raise SystemExit("benchmarks.fleet needs redis-server on PATH (its own, to count commands)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="memq-fleet-redis-")
        self.proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                return url
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def table(results: list[dict]) -> str:
    head = ("| worker processes | steps/s in all (workers' own span) | vs 1 | worker CPU ms/step "
            "| Postgres CPU ms/step | Postgres cores busy "
            "| commits/step | Redis commands/step | Postgres connections (peak) | load avg before/after |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    base = results[0]["steps_per_s"]
    rows = [f"| {r['processes']} | {r['steps_per_s']:.0f} ({r['stepping_steps_per_s']:.0f}) "
            f"| {r['steps_per_s'] / base:.2f}x "
            f"| {r['worker_cpu_ms_per_step']:.1f} | {r['pg_cpu_ms_per_step']:.2f} | {r['pg_cores_busy']:.2f} "
            f"| {r['pg_commits_per_step']:.2f} | {r['redis_commands_per_step']:.1f} | {r['pg_peak_connections']} "
            f"| {r['load_avg_before']} / {r['load_avg']} |" for r in results]
    return "\n".join([head, *rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", default="1,2,4")
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--per-agent", type=int, default=10)
    ap.add_argument("--latency-ms", type=int, default=200)
    ap.add_argument("--pgbouncer", default=None, metavar="HOST:PORT",
                    help="reach Postgres through this PgBouncer (transaction mode); the probes read it directly")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    results = []
    with OwnRedis() as broker:
        for n in parse_processes(args.processes):
            r = run(args.agents, args.per_agent, args.latency_ms, processes=n, broker_url=broker,
                    probes=(PostgresProbe(), RedisProbe(broker)), database_via=args.pgbouncer)
            r["via_pgbouncer"] = args.pgbouncer
            r["cores"] = os.cpu_count()
            results.append(r)
            print(f"{n} process(es): {r['steps_per_s']:.0f} steps/s, statuses {r['statuses']}", flush=True)
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
