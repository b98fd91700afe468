"""The benchmark's environment: a fresh Postgres database, a Redis db index, the
scripted LLM in its own process, and worker subprocesses (memq's and the bare one).

Nothing is mocked. The scripted LLM runs as a subprocess (``tests/scripted_llm.py``)
so its request handling never competes with the driver for the GIL; it is
steered through its HTTP admin endpoints.
"""

from __future__ import annotations

import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
SCRIPTED_LLM = ROOT / "tests" / "scripted_llm.py"

PG_SERVER = os.environ.get("MEMQ_BENCH_PG_URL", "postgresql://root@127.0.0.1:5432/postgres")
REDIS_SERVER = os.environ.get("MEMQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379")


# -- small numeric helpers ---------------------------------------------------------

def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.fmean(xs) if xs else float("nan")


def percentile(xs: Iterable[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants (a supervisor and its workers)."""
    total = cpu_s(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += tree_cpu_s(int(child))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def _cpu_ticks() -> list[int]:
    """The machine's CPU ticks so far, every core: /proc/stat's first line (user nice system idle
    iowait irq softirq steal ...)."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def box_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (every core; /proc/stat: all but idle, iowait and
    steal: time the hypervisor gave to others is not this machine's work)."""
    fields = _cpu_ticks()
    busy = sum(fields[:7]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq (steal: [7])
    return busy / os.sysconf("SC_CLK_TCK")


def steal_mark() -> tuple[int, int]:
    """(all CPU ticks, ticks stolen by the hypervisor) so far, every core (/proc/stat)."""
    fields = _cpu_ticks()
    return sum(fields[:8]), fields[7]


def steal_pct(since: tuple[int, int]) -> float:
    """The share of CPU time the hypervisor took from this machine since `since` (a steal_mark()):
    a virtual machine whose host is busy runs everything slower, baselines included."""
    total, stolen = steal_mark()
    return round(100.0 * (stolen - since[1]) / max(1, total - since[0]), 1)


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        m = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_gb = round(int(m.group(1)) / 1024 / 1024, 1) if m else None
    except OSError:
        pass

    def version(cmd: list[str]) -> str | None:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            return None

    return {
        "nproc": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "cpu_model": cpu,
        "mem_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": version(["psql", "--version"]),
        "redis": version(["redis-server", "--version"]),
    }


# -- Postgres and Redis ------------------------------------------------------------

class BenchDatabase:
    """``memq_bench_<hex>``: created and migrated here, dropped by drop()."""

    def __init__(self) -> None:
        self.name = f"memq_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = f"{PG_SERVER.rsplit('/', 1)[0]}/{self.name}"
        from storage.db import Database

        db = Database(self.url)
        db.upgrade()
        db.dispose()
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        """One autocommit connection for the driver's own reads and bulk loads."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def query(self, sql: str, params: tuple | list | None = None) -> list[tuple]:
        """Run one statement on the driver's connection; reconnect once if it was lost
        (another test run on this machine may restart Postgres)."""
        for attempt in (1, 2):
            try:
                cur = self.conn.execute(sql, params)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
                try:
                    self.conn.close()
                except Exception:  # noqa: BLE001
                    pass
                self._conn = None
                time.sleep(1.0)
        raise AssertionError("unreachable")

    def drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def pick_redis_db() -> str:
    """An empty Redis db index (others may be in use by concurrent test runs), flushed."""
    order = list(range(1, 16))
    secrets.SystemRandom().shuffle(order)
    for index in order:
        url = f"{REDIS_SERVER}/{index}"
        r = redis.Redis.from_url(url)
        try:
            if r.dbsize() == 0:
                r.flushdb()
                return url
        finally:
            r.close()
    raise RuntimeError("no empty Redis db index in 1..15")


# -- the scripted LLM (subprocess) ---------------------------------------------------

class LLMServer:
    """``tests/scripted_llm.py`` in its own process, steered over HTTP."""

    def __init__(self, latency_ms: int = 0, nodelay: bool = True) -> None:
        # benchmarks.llm_server runs the same module with TCP_NODELAY (see there).
        target = ["-m", "benchmarks.llm_server"] if nodelay else [str(SCRIPTED_LLM)]
        self.nodelay = nodelay
        self.proc = subprocess.Popen(
            [sys.executable, *target, "--port", "0", "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
            cwd=str(ROOT), env=base_env(),
        )
        line = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"scripted LLM did not start: {line!r}")
        self.base = line.split(" ", 1)[1]
        self.url = self.base + "/v1"
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def set_default(self, key: str, response: dict | None) -> None:
        self.http.post("/_default", json={"key": key, "response": response}).raise_for_status()

    def set_latency(self, ms: int) -> None:
        self.http.post("/_latency", json={"latency_ms": ms}).raise_for_status()

    def requests(self, key: str | None = None) -> list[dict]:
        params = {"key": key} if key else None
        r = self.http.get("/_requests", params=params)
        r.raise_for_status()
        return r.json()

    def embedding_requests(self) -> int:
        """How many embeddings requests the server has answered."""
        r = self.http.get("/_embedding_requests")
        r.raise_for_status()
        return int(r.json()["count"])

    def reset(self) -> None:
        self.http.post("/_reset", json={}).raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- worker subprocesses -------------------------------------------------------------

class WorkerProc:
    """A worker subprocess in its own session; ready when its log says " ready."."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=str(ROOT))
        self.ready_s: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout_s: float = 90.0, readies: int = 1) -> float:
        """Seconds from spawn to ``readies`` lines with " ready." in the log (one per worker process)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.tail()}")
            if self.log_path.read_bytes().count(b" ready.") >= readies:
                self.ready_s = time.perf_counter() - self.spawned
                return self.ready_s
            time.sleep(0.01)
        raise TimeoutError(f"worker not ready after {timeout_s}s:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._log.close()


def base_env() -> dict[str, str]:
    """The caller's environment without any MEMQ_ setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def memq_worker(env: dict[str, str], log_path: Path, concurrency: int, loglevel: str = "INFO",
                queues: str | None = None, processes: int = 1) -> WorkerProc:
    cmd = [sys.executable, "-m", "memq.cli.main", "worker", "--loglevel", loglevel,
           "--concurrency", str(concurrency), "--processes", str(processes)]
    if queues:
        cmd += ["--queues", queues]
    return WorkerProc(cmd, env, log_path)


def bare_worker(broker_url: str, log_path: Path, concurrency: int, events: bool) -> WorkerProc:
    from benchmarks.bare_celery import QUEUE

    env = base_env()
    env.update({"BENCH_BROKER_URL": broker_url, "BENCH_TASK_EVENTS": "1" if events else "0"})
    cmd = [sys.executable, "-m", "celery", "-A", "benchmarks.bare_celery", "worker",
           "--pool", "threads", "--concurrency", str(concurrency), "--queues", QUEUE,
           "--loglevel", "INFO", "--without-mingle", "--without-gossip",
           "--hostname", f"bench-bare-{secrets.token_hex(3)}@%h"]
    return WorkerProc(cmd, env, log_path)
