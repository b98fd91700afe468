"""The processes a chaos run starts and breaks: Postgres database, broker, workers.

Every process started here runs in its own process group, so a SIGKILL of the
group takes the whole worker (main process and any child) at once, and so
nothing here ever needs to find a process by name.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]
PG_SERVER = os.environ.get("MEMQ_CHAOS_PG_URL", "postgresql://root@127.0.0.1:5432/postgres")
RABBIT_URL = os.environ.get("MEMQ_CHAOS_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672")
QUEUES = ("interactive", "batch", "schedule", "ingest")


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_cmd(args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def wait_for(pred, timeout_s: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


# --------------------------------------------------------------------- Postgres
class ChaosDatabase:
    """A fresh database on the local server, migrated; dropped by drop()."""

    def __init__(self, server_url: str = PG_SERVER) -> None:
        self.server_url = server_url
        self.name = f"memq_chaos_{secrets.token_hex(4)}"
        self.url = f"{server_url.rsplit('/', 1)[0]}/{self.name}"

    def create(self, tablespace: str | None = None) -> "ChaosDatabase":
        with psycopg.connect(self.server_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"' + (f" TABLESPACE {tablespace}" if tablespace else ""))
        from storage.db import Database

        db = Database(self.url)
        try:
            db.upgrade()
        finally:
            db.dispose()
        return self

    def drop(self) -> None:
        def _drop() -> bool:
            with psycopg.connect(self.server_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            return True

        try:
            wait_for(_drop, 30, f"dropping database {self.name}", interval=0.5)
        except TimeoutError:
            log(f"could not drop database {self.name}; drop it by hand")


def pg_ready() -> bool:
    try:
        with psycopg.connect(PG_SERVER, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def restart_postgres() -> float:
    """Restart the local cluster (every connection is cut); returns seconds until it answers."""
    version = sorted(os.listdir("/etc/postgresql"))[0]
    t0 = time.monotonic()
    r = run_cmd(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"])
    if r.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster restart failed: {r.stderr.strip() or r.stdout.strip()}")
    wait_for(pg_ready, 60, "Postgres after restart", interval=0.2)
    return time.monotonic() - t0


# ----------------------------------------------------------------------- brokers
def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_port(start: int) -> int:
    for port in range(start, start + 200):
        if _port_free(port):
            return port
    raise RuntimeError(f"no free port in {start}..{start + 199}")


class OwnRedis:
    """A redis-server of this run's own, on a free port, in a temp dir.

    aof=False: nothing persists (``--save "" --appendonly no``): a restart loses
    every queued and unacked doorbell. aof=True: ``--appendonly yes
    --appendfsync always``: a restart keeps them.
    """

    name = "redis"

    def __init__(self, aof: bool = False, port: int | None = None) -> None:
        self.aof = aof
        self.name = "redis-aof" if aof else "redis"
        self.port = port or free_port(6390)
        self.dir = Path(tempfile.mkdtemp(prefix="memq-chaos-redis-"))
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        r = run_cmd(["redis-cli", "-p", str(self.port), "ping"], timeout=5)
        return r.stdout.strip() == "PONG"

    def start(self) -> "OwnRedis":
        persist = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", *persist, "--daemonize", "no",
                "--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_for(self._ping, 30, f"redis-server on port {self.port}")
        return self

    def _shutdown(self) -> None:
        run_cmd(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], timeout=10)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None

    def queued(self) -> int:
        r = run_cmd(["redis-cli", "-p", str(self.port), "llen", "interactive"], timeout=5)
        try:
            return int(r.stdout.strip())
        except ValueError:
            return -1

    def restart(self, down_s: float = 1.0, on_down=None) -> dict:
        """shutdown nosave, wait down_s, start; on_down() runs once the server is gone."""
        before = self.queued()
        try:
            self._shutdown()
        finally:
            if on_down:
                on_down()
        time.sleep(down_s)
        self.start()
        self.restarts += 1
        return {"queued_before": before, "queued_after": self.queued()}

    def stop(self) -> None:
        self._shutdown()
        shutil.rmtree(self.dir, ignore_errors=True)


class Rabbit:
    """The local RabbitMQ, with a fresh vhost of this run's own (or memq's queues purged)."""

    name = "rabbitmq"

    def __init__(self) -> None:
        self.vhost: str | None = f"memq_chaos_{secrets.token_hex(4)}"
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"{RABBIT_URL}/{self.vhost}" if self.vhost else f"{RABBIT_URL}//"

    def start(self) -> "Rabbit":
        r = run_cmd(["rabbitmqctl", "add_vhost", self.vhost])
        if r.returncode == 0:
            r = run_cmd(["rabbitmqctl", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"])
        if r.returncode != 0:
            log(f"no vhost of our own ({r.stderr.strip()[:200]}); purging memq's queues on '/'")
            run_cmd(["rabbitmqctl", "delete_vhost", self.vhost])
            self.vhost = None
            for q in QUEUES:
                run_cmd(["rabbitmqctl", "purge_queue", "-p", "/", q])
        return self

    def _listening(self) -> bool:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True

    def restart(self, down_s: float = 1.0, on_down=None) -> dict:
        """stop_app, wait down_s, start_app. on_down() runs just before stop_app: RabbitMQ
        waits for its clients while it closes their connections, and frozen ones never answer."""
        before = self.queued()
        if on_down:
            on_down()
        r = run_cmd(["rabbitmqctl", "stop_app"])
        if r.returncode != 0:
            raise RuntimeError(f"rabbitmqctl stop_app failed: {r.stderr.strip()}")
        time.sleep(down_s)
        r = run_cmd(["rabbitmqctl", "start_app"])
        if r.returncode != 0:
            raise RuntimeError(f"rabbitmqctl start_app failed: {r.stderr.strip()}")
        run_cmd(["rabbitmqctl", "await_startup"])
        wait_for(self._listening, 60, "RabbitMQ listener")
        self.restarts += 1
        return {"queued_before": before, "queued_after": self.queued()}

    def queued(self) -> int:
        r = run_cmd(["rabbitmqctl", "list_queues", "-p", self.vhost or "/", "-q", "--no-table-headers",
                     "name", "messages"], timeout=30)
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "interactive":
                try:
                    return int(parts[1])
                except ValueError:
                    pass
        return -1

    def stop(self) -> None:
        if self.vhost:
            run_cmd(["rabbitmqctl", "delete_vhost", self.vhost])


def make_broker(kind: str):
    if kind == "redis":
        return OwnRedis(aof=False)
    if kind == "redis-aof":
        return OwnRedis(aof=True)
    if kind == "rabbitmq":
        return Rabbit()
    raise ValueError(f"unknown broker {kind!r}")


# ----------------------------------------------------------------------- workers
# `memq worker`, with litellm imported before the worker starts. memq imports it
# lazily, on a worker's first step (3-8 s on this machine), while that step holds
# its agent's lease; preloading makes "ready" mean "able to step", so kills land
# in the middle of real steps. --cold-workers runs the plain command instead.
PRELOAD = "import workers.llm, litellm; from memq.cli.main import main; main()"
# Experiments: MEMQ_CHAOS_WORKER_PATCH=FILE runs FILE's Python in every worker before
# it starts (e.g. to try a proposed memq fix under chaos without editing memq).
PATCH_FILE = os.environ.get("MEMQ_CHAOS_WORKER_PATCH")


class Worker:
    """One `memq worker` slot; each start() is a new process (a new generation)."""

    def __init__(self, slot: int, env: dict[str, str], log_dir: Path, concurrency: int,
                 preload: bool = True, processes: int = 1) -> None:
        self.slot = slot
        self.processes = processes  # > 1: `memq worker --processes N` (a supervisor and N children)
        self.env = env
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.preload = preload
        self.generation = 0
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.started_at = 0.0
        self._ready_seen = False
        self._killed = False
        self.startup_s: list[float] = []  # start -> " ready." of each generation
        self._log = None

    @property
    def memq_worker_id(self) -> str:
        """What memq writes as lease_owner (workers/runtime.py: hostname:pid)."""
        assert self.proc is not None
        return f"{socket.gethostname()}:{self.proc.pid}"

    def pids(self) -> list[int]:
        """The worker's processes: the one we started and its descendants."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                todo += [int(c) for t in os.listdir(f"/proc/{pid}/task")
                         for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
            except OSError:
                pass
        return out

    def memq_worker_ids(self) -> list[str]:
        """Every lease_owner this worker's processes write (the children's, with --processes N)."""
        host = socket.gethostname()
        return [f"{host}:{pid}" for pid in self.pids()]

    def start(self) -> "Worker":
        self.generation += 1
        self.log_path = self.log_dir / f"worker{self.slot}-gen{self.generation}.log"
        self._log = open(self.log_path, "ab")
        code = PRELOAD if self.preload else "from memq.cli.main import main; main()"
        if PATCH_FILE:
            code = f"exec(compile(open({PATCH_FILE!r}).read(), {PATCH_FILE!r}, 'exec')); {code}"
        head = ["-c", code] if (self.preload or PATCH_FILE) else ["-m", "memq.cli.main"]
        cmd = [sys.executable, *head, "worker", "--processes", str(self.processes),
               "--concurrency", str(self.concurrency),
               "--loglevel", "INFO", "--hostname", f"chaos{self.slot}g{self.generation}@%h"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.monotonic()
        self._ready_seen = False
        self._killed = False
        return self

    def exited(self) -> int | None:
        """The exit code if this generation ended by itself (not killed or stopped by us)."""
        if self.proc is None or self._killed:
            return None
        return self.proc.poll()

    def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        if self._ready_seen:
            return True
        if self.log_path is not None and self.log_path.read_bytes().count(b" ready.") >= self.processes:
            self._ready_seen = True
            self.startup_s.append(round(time.monotonic() - self.started_at, 1))
            return True
        return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        def ok() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early, see {self.log_path}")
            return self.ready()

        wait_for(ok, timeout_s, f"worker {self.slot} gen {self.generation} ({self.log_path})")

    def kill(self) -> None:
        """SIGKILL the worker's whole process group: no clean-up runs, leases stay held."""
        assert self.proc is not None
        self._killed = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._log.close()

    def signal(self, sig: int) -> None:
        """Send sig to the worker's process group (SIGSTOP/SIGCONT freeze and thaw it)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        if self.proc is None:
            return
        self._killed = True
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if self._log:
            self._log.close()
