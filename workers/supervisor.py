"""`memq worker --processes N`: one parent process supervising N Celery worker processes.

One worker process is bound by one core (the GIL), so a machine runs one per
core. The parent does no step work; it

- starts N children (`memq worker --processes 1`, same options, node names
  ``memq1@host``, ``memq2@host``, …) in its own process group, so a SIGKILL of
  the group still takes everything at once;
- restarts a child that exits by itself, after a backoff that doubles with each
  quick failure; a child that fails ``max_failures`` times in a row, each within
  ``stable_s`` of starting, is reported and left down (no tight crash loop);
- forwards SIGTERM/SIGINT as SIGTERM (Celery's warm shutdown: steps in flight
  finish; a step that cannot is handed back by acks_late), a second one as
  SIGQUIT (cold shutdown), and exits 0 when every child stopped cleanly, 1 when
  one crash-looped or stopped with an error;
- serves the one /metrics endpoint for all children: each child records into
  prometheus-client's multiprocess files in a temp dir the parent owns and
  removes on exit.

The embedded vector store keeps its one-owner rule as before: every child asks
for it, the store's lock lets exactly one open it, and the others hand their
vector operations to that owner (storage/vector/access.py); when the owner dies,
another child takes the store over.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

PARENT_PID_ENV = "MEMQ_WORKER_PARENT_PID"  # set in every child: the supervising parent's pid
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

log = logging.getLogger("memq.worker")


def default_processes() -> int:
    """One per core this process may use: CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def follow_parent() -> None:
    """In a child: stop (SIGTERM, a warm shutdown) when the supervising parent dies, even by SIGKILL."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(parent):  # the parent died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class RestartPolicy:
    backoff_s: float = 1.0  # first restart delay; doubles with each quick failure
    max_backoff_s: float = 30.0
    stable_s: float = 60.0  # a child that ran this long before exiting starts the count afresh
    max_failures: int = 5  # quick failures in a row before the slot is left down

    def delay_s(self, failures: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(0, failures - 1))


@dataclass
class Child:
    slot: int
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0  # quick failures in a row
    restart_at: float | None = None
    given_up: bool = False
    exit_codes: list[int] = field(default_factory=list)


class Supervisor:
    """Runs ``processes`` children built by ``child_cmd(slot)`` until a signal stops it."""

    def __init__(self, processes: int, child_cmd: Callable[[int], Sequence[str]], *,
                 env: dict[str, str] | None = None, policy: RestartPolicy | None = None,
                 metrics_port: int | None = None, metrics_addr: str = "0.0.0.0",
                 broker_url: str | None = None, poll_s: float = 0.2, stdout: object = None) -> None:
        self.children = [Child(slot) for slot in range(1, processes + 1)]
        self.child_cmd = child_cmd
        self.base_env = dict(os.environ if env is None else env)
        self.policy = policy or RestartPolicy()
        self.metrics_port = metrics_port
        self.metrics_addr = metrics_addr
        self.broker_url = broker_url
        self.poll_s = poll_s
        self.stdout = stdout  # None: the parent's own stdout
        self.signals = 0  # SIGTERM/SIGINT received
        self._forwarded = 0
        self.metrics_dir: str | None = None

    # -- children ------------------------------------------------------------------
    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in self.base_env.items() if k != "MEMQ_METRICS_PORT"}
        env[PARENT_PID_ENV] = str(os.getpid())
        env[MULTIPROC_ENV] = self.metrics_dir or ""
        return env

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(list(self.child_cmd(child.slot)), env=self._child_env(),
                                      stdout=self.stdout)
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("worker process %d started (pid %d)", child.slot, child.proc.pid)

    def _reap(self, child: Child) -> None:
        """A child that exited while no stop was asked for: schedule its restart, or give up on it."""
        code = child.proc.returncode
        ran_s = time.monotonic() - child.started_at
        child.exit_codes.append(code)
        self._mark_dead(child.proc.pid)
        child.proc = None
        child.failures = 1 if ran_s >= self.policy.stable_s else child.failures + 1
        how = f"signal {-code}" if code < 0 else f"code {code}"
        if child.failures >= self.policy.max_failures:
            child.given_up = True
            log.error("worker process %d exited (%s) %d times in a row, each within %.0f s of starting; "
                      "not restarting it (its log above says why)", child.slot, how, child.failures,
                      self.policy.stable_s)
            return
        delay = self.policy.delay_s(child.failures)
        child.restart_at = time.monotonic() + delay
        log.warning("worker process %d exited (%s) after %.1f s; restarting it in %.1f s",
                    child.slot, how, ran_s, delay)

    def _mark_dead(self, pid: int) -> None:
        if self.metrics_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.metrics_dir)

    def live(self) -> list[Child]:
        return [c for c in self.children if c.proc is not None and c.proc.poll() is None]

    # -- signals -------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals += 1

    def _forward(self) -> None:
        """First signal: SIGTERM (warm shutdown) to every child; any later one: SIGQUIT (cold)."""
        while self._forwarded < self.signals:
            self._forwarded += 1
            sig = signal.SIGTERM if self._forwarded == 1 else signal.SIGQUIT
            log.info("worker: %s to %d process(es)", "stopping (steps in flight finish)" if sig == signal.SIGTERM
                     else "stopping at once (steps in flight go back to the queue)", len(self.live()))
            for child in self.live():
                try:
                    child.proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    # -- metrics -------------------------------------------------------------------
    def _serve_metrics(self) -> None:
        if self.metrics_port is None:
            return
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.metrics_dir)
        if self.broker_url:
            from workers.metrics import QueueDepthCollector

            registry.register(QueueDepthCollector(self.broker_url))
        start_http_server(self.metrics_port, addr=self.metrics_addr, registry=registry)
        log.info("metrics of %d worker processes on http://%s:%d/metrics", len(self.children),
                 self.metrics_addr, self.metrics_port)

    # -- the loop ------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until stopped; the exit code (0 clean, 1 a child crash-looped or failed to stop)."""
        self.metrics_dir = tempfile.mkdtemp(prefix="memq-metrics-")
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._serve_metrics()
            for child in self.children:
                self._start(child)
            while not self.signals:
                self._tick()
                if all(c.given_up for c in self.children):
                    log.error("every worker process crash-looped; the supervisor exits")
                    return 1
                time.sleep(self.poll_s)
            return self._stop()
        finally:
            for child in self.live():  # only after an error in this loop: never leave children behind
                child.proc.kill()
                child.proc.wait()
            for s, handler in previous.items():
                signal.signal(s, handler)
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                self._reap(child)
            if child.proc is None and child.restart_at is not None and now >= child.restart_at:
                self._start(child)

    def _stop(self) -> int:
        codes = []
        while True:
            self._forward()
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None:
                    codes.append(child.proc.returncode)
                    child.proc = None
            if not any(c.proc is not None for c in self.children):
                break
            time.sleep(self.poll_s)
        failed = [c for c in codes if c not in (0, -signal.SIGTERM)]
        given_up = [c.slot for c in self.children if c.given_up]
        log.info("worker stopped: %d process(es) exited cleanly%s%s", len(codes) - len(failed),
                 f", {len(failed)} with an error ({failed})" if failed else "",
                 f"; process(es) {given_up} had crash-looped" if given_up else "")
        return 1 if failed or given_up else 0


def node_name(hostname: str | None, slot: int) -> str:
    """Celery node name of child ``slot``: memq1@%h, or the given name with the slot number added."""
    name, at, host = (hostname or "memq@%h").partition("@")
    return f"{name}{slot}{at}{host}"


def run_supervised(settings: object, processes: int, *, queues: Sequence[str], pool: str, loglevel: str,
                   concurrency: int | None = None, hostname: str | None = None, json_out: bool = False) -> int:
    """`memq worker --processes N` (N > 1, with a broker): supervise N workers; returns the exit code."""
    from memq import logging_setup

    logging_setup.configure(loglevel, json_logs=settings.log_json)

    def child_cmd(slot: int) -> list[str]:
        cmd = [sys.executable, "-m", "memq.cli.main", "worker", "--processes", "1", "--pool", pool,
               "--loglevel", loglevel, "--queues", ",".join(queues), "--hostname", node_name(hostname, slot)]
        return cmd + (["--concurrency", str(concurrency)] if concurrency else [])

    log.info("worker supervisor (pid %d): %d processes, queues %s", os.getpid(), processes, ",".join(queues))
    return Supervisor(processes, child_cmd, metrics_port=settings.metrics_port,
                      metrics_addr=settings.metrics_addr or "0.0.0.0", broker_url=settings.broker_url,
                      stdout=sys.stderr if json_out else None).run()  # --json: stdout keeps the one document
