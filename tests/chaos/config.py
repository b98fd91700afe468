"""The chaos run's settings (Config, the command line) and its printed summary."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class Config:
    broker: str = "redis"
    agents: int = 20
    messages: int = 30
    kills: int = 5
    broker_restart: bool = False
    pg_restart: bool = False
    dup_doorbells: bool = False
    llm_faults: bool = False
    json_out: str | None = None
    send_s: float | None = None  # the window the sends are spread over
    kill_every_s: float = 6.0
    first_kill_s: float = 3.0
    timeout_s: float = 240.0  # after the last send, how long the work may take to drain
    seed: int = 0
    latency_ms: int = 30
    workers: int = 2
    concurrency: int = 20
    senders: int = 4
    dup_send_p: float = 0.08
    keep_logs: bool = False
    cold_workers: bool = False
    freeze_s: float = 1.5  # workers are frozen this long before a broker restart
    # issue 19: slow and quiet faults, and scale
    own_pg: bool = False  # a Postgres cluster of the run's own (implied by every Postgres fault)
    freeze_redis: bool = False
    freeze_pg: bool = False
    freeze_fault_s: float = 20.0  # how long --freeze-redis / --freeze-pg keep the server stopped
    full_disk: bool = False
    full_disk_s: float = 15.0
    disk_mb: int = 64
    cut_broker: bool = False
    cut_s: float = 15.0
    slow_tail: bool = False
    slow_rate: float = 0.01
    slow_s: float = 30.0
    processes: int = 1
    soak_minutes: float | None = None
    soak_rate: float = 20.0  # messages per second over all agents in a soak
    llm_timeout_s: float | None = None  # the workers' MEMQ_LLM_TIMEOUT_S (default: 1 s; slow tail: slow_s + 15)
    sample_every_s: float = 60.0

    @property
    def uses_own_pg(self) -> bool:
        """Every Postgres fault, and every run that opens many connections (more worker
        processes, a soak), uses a cluster of its own: the shared one allows 100 clients."""
        return (self.own_pg or self.pg_restart or self.freeze_pg or self.full_disk or self.processes > 1
                or bool(self.soak_minutes) or self.workers * self.processes > 2)

    def fault_plan(self) -> list[tuple[float, str]]:
        """(fraction of the send window, fault) for the one-at-a-time faults, in order."""
        plan = [(0.35, "broker", self.broker_restart), (0.65, "pg", self.pg_restart),
                (0.15, "freeze_redis", self.freeze_redis), (0.45, "freeze_pg", self.freeze_pg),
                (0.55, "full_disk", self.full_disk), (0.25, "cut_broker", self.cut_broker),
                (0.3, "slow_tail", self.slow_tail)]
        return [(f, name) for f, name, on in plan if on]

    @property
    def fault_time_s(self) -> float:
        """Seconds the slow faults keep things broken (the send window grows by this much)."""
        return ((self.freeze_fault_s + 5) * (self.freeze_redis + self.freeze_pg)
                + (self.full_disk_s + 5) * self.full_disk + (self.cut_s + 5) * self.cut_broker
                + (2 * self.slow_s + 20) * self.slow_tail)

    @property
    def send_window_s(self) -> float:
        if self.send_s is not None:
            return self.send_s
        if self.soak_minutes:
            return self.soak_minutes * 60.0
        return max(12.0, self.first_kill_s + self.kills * self.kill_every_s + 10.0) + self.fault_time_s



SUMMARY_KEYS = ("broker", "messages", "repeated_sends", "kills", "broker_restarts", "pg_restarts",
                "dup_doorbells", "llm_faults", "lost", "duplicated", "reordered", "overlapping",
                "wrong_replies", "failed", "failed_llm", "failed_gave_up", "chain_capped", "steps",
                "longest_recovery_s", "longest_stall_s", "waits", "unexpected_worker_exits",
                "send_errors", "processes", "elapsed_s", "wall_s", "ok")


def summary(report: dict[str, Any]) -> str:
    lines = [f"{k:>20}: {report.get(k)}" for k in SUMMARY_KEYS]
    for k in report.get("kill_details", []):
        lines.append(f"{'kill':>20}: {k}")
    for e in report.get("faults", []):
        if e["event"] != "broker_restart":
            lines.append(f"{e['event']:>20}: {e}")
    for key in ("broker_cut", "slow_tail", "doorbell_redeliveries"):
        if report.get(key):
            lines.append(f"{key:>20}: {report[key]}")
    if report.get("soak"):
        soak = {k: v for k, v in report["soak"].items() if k != "samples"}
        lines.append(f"{'soak':>20}: {soak}")
        for smp in report["soak"].get("samples", []):
            lines.append(f"{'soak sample':>20}: {({k: v for k, v in smp.items() if k != 'per_table_kb'})}")
    if report.get("failures"):
        lines.append(f"{'FAILED':>20}: {', '.join(report['failures'])}")
    for agent, notes in list(report.get("notes", {}).items())[:10]:
        for n in notes[:5]:
            lines.append(f"{'note':>20}: {agent[:8]} {n}")
    for e in report.get("errors", [])[:5]:
        lines.append(f"{'error':>20}: {e.strip().splitlines()[-1] if e.strip() else e}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> Config:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos.run", description="Chaos run: exactly once, in order, through crashes.")
    ap.add_argument("--broker", choices=["redis", "redis-aof", "rabbitmq"], default="redis")
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--messages", type=int, default=30)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--broker-restart", action="store_true")
    ap.add_argument("--pg-restart", action="store_true")
    ap.add_argument("--dup-doorbells", action="store_true")
    ap.add_argument("--llm-faults", action="store_true")
    ap.add_argument("--json-out", metavar="FILE")
    ap.add_argument("--send-s", type=float, default=None, help="spread the sends over this many seconds")
    ap.add_argument("--kill-every", dest="kill_every_s", type=float, default=6.0)
    ap.add_argument("--timeout", dest="timeout_s", type=float, default=240.0,
                    help="seconds the work may take to drain after the last send")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency-ms", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--keep-logs", action="store_true", help="keep worker logs (always kept on failure)")
    ap.add_argument("--freeze-s", type=float, default=1.5,
                    help="before a broker restart, SIGSTOP the workers this long so doorbells queue up")
    ap.add_argument("--cold-workers", action="store_true",
                    help="run plain `memq worker` (litellm imported on the first step, not before)")
    f = ap.add_argument_group("slow and quiet faults, scale (issue 19)")
    f.add_argument("--own-pg", action="store_true",
                   help="a Postgres cluster of the run's own (implied by --pg-restart, --freeze-pg, --full-disk, "
                        "--processes > 1, --soak-minutes)")
    f.add_argument("--freeze-redis", action="store_true", help="SIGSTOP the run's Redis, SIGCONT after --freeze-fault-s")
    f.add_argument("--freeze-pg", action="store_true", help="SIGSTOP the run's Postgres, SIGCONT after --freeze-fault-s")
    f.add_argument("--freeze-fault-s", type=float, default=20.0)
    f.add_argument("--full-disk", action="store_true",
                   help="the database on a --disk-mb tmpfs tablespace, filled mid-run, freed after --full-disk-s")
    f.add_argument("--full-disk-s", type=float, default=15.0)
    f.add_argument("--disk-mb", type=int, default=64)
    f.add_argument("--cut-broker", action="store_true",
                   help="worker 0 reaches Redis through a proxy that goes silent for --cut-s, then resets")
    f.add_argument("--cut-s", type=float, default=15.0)
    f.add_argument("--slow-tail", action="store_true",
                   help="from a third in, --slow-rate of LLM calls take --slow-s (below the client's timeout)")
    f.add_argument("--slow-rate", type=float, default=0.01)
    f.add_argument("--slow-s", type=float, default=30.0)
    f.add_argument("--processes", type=int, default=1, help="each worker is `memq worker --processes N`")
    f.add_argument("--soak-minutes", type=float, default=None,
                   help="send at --soak-rate msg/s for N minutes; sample worker RSS and table sizes")
    f.add_argument("--soak-rate", type=float, default=20.0)
    f.add_argument("--sample-every", dest="sample_every_s", type=float, default=60.0)
    f.add_argument("--llm-timeout-s", type=float, default=None,
                   help="the workers' LLM timeout (default 1 s, so --llm-faults' 2-s sleeps time out; a long "
                        "scale run on a box shared with other work wants more, or its 30-ms LLM's answers "
                        "late by a second count as failed runs)")
    a = ap.parse_args(argv)
    if a.soak_minutes:  # messages per agent from the rate
        a.messages = max(1, round(a.soak_rate * a.soak_minutes * 60 / a.agents))
        if "--kills" not in (argv if argv is not None else sys.argv):
            a.kills = 0
    return Config(**vars(a))
