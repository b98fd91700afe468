"""Chaos run: exactly once, in order, through crashes.

    python -m tests.chaos.run [--broker redis|redis-aof|rabbitmq] [--agents 20] [--messages 30]
        [--kills 5] [--broker-restart] [--pg-restart] [--dup-doorbells] [--llm-faults]
        [--freeze-redis] [--freeze-pg] [--full-disk] [--cut-broker] [--slow-tail]
        [--processes N] [--soak-minutes N] [--own-pg] [--json-out FILE]

Starts a fresh Postgres database, a broker, the scripted LLM and two `memq worker`
processes; sends numbered messages to every agent without waiting, while it
SIGKILLs workers, restarts the broker and Postgres, rings duplicate doorbells and
makes the LLM misbehave; then checks from Postgres alone that every message was
processed exactly once, in order, one step at a time. Exit 0 only if nothing was
lost, duplicated, reordered or overlapping. See tests/chaos/README.md.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from tests.chaos import faults as quiet_faults, harness
from tests.chaos.checker import FINISHED, check
from tests.chaos.config import Config, parse_args, summary
from tests.chaos.harness import log

LLM_FAULT_RATES = {"timeout": 0.02, "429": 0.02, "500": 0.02, "malformed": 0.02, "empty": 0.02}


@dataclass
class Kill:
    at: float  # epoch seconds
    slot: int
    generation: int
    memq_worker_ids: list[str]
    warm: bool = True  # the worker held leases (steps in flight) and every other worker was up
    leases: int = 0  # leases the killed worker held
    in_flight: list[tuple[str, int]] = field(default_factory=list)  # (agent_id, step_counter) with work left
    recovery_s: float | None = None
    recovered: int = 0


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class ChaosRun:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="memq-chaos-"))
        self.pg = None
        if cfg.uses_own_pg:
            from tests.chaos.own_pg import OwnPostgres

            self.pg = OwnPostgres()
        self.db = harness.ChaosDatabase(self.pg.server_url if self.pg else harness.PG_SERVER)
        self.broker = harness.make_broker(cfg.broker)
        self.proxy = None  # --cut-broker: worker 0 reaches Redis through it
        self.slow_on_at: float | None = None
        self.sends_started_at = 0.0
        self.send_attempts: list[tuple[float, float, str | None, str]] = []  # start, took, error, message
        self.sampler = None
        self.llm = None
        self.workers: list[harness.Worker] = []
        self.agent_ids: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # sender's record
        self.sent: dict[str, list[str]] = {}
        self.keys: dict[str, dict[str, str]] = {}
        self.run_of_key: dict[str, str] = {}
        self.dup_send_mismatch: dict[str, int] = {}
        self.repeated_sends = 0
        self.racing_sends = 0
        self.send_retries = 0
        self.send_errors: dict[str, int] = {}
        self.unsent = 0
        # chaos record
        self.kills: list[Kill] = []
        self.events: list[dict[str, Any]] = []
        self.dup_doorbells = 0
        self.dup_doorbell_errors = 0
        self.errors: list[str] = []
        self.unexpected_exits: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ set-up
    def settings(self):
        from memq.settings import Settings

        return Settings(database_url=self.db.url, broker_url=self.broker.url, home=self.tmp / "home")

    @property
    def llm_timeout_s(self) -> float:
        """1 s, so injected timeouts are cheap; above the slow tail's calls with --slow-tail."""
        if self.cfg.llm_timeout_s is not None:
            return self.cfg.llm_timeout_s
        return self.cfg.slow_s + 15.0 if self.cfg.slow_tail else 1.0

    def worker_env(self, broker_url: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}
        env.update({
            "MEMQ_DATABASE_URL": self.db.url,
            "MEMQ_BROKER_URL": broker_url or self.broker.url,
            "MEMQ_LLM_MODEL": "openai/scripted",
            "MEMQ_LLM_API_BASE": self.llm.url,
            "MEMQ_LLM_API_KEY": "chaos-key-not-secret",
            "MEMQ_LLM_TIMEOUT_S": f"{self.llm_timeout_s:g}",
            "MEMQ_LLM_MAX_RETRIES": "4",
            "MEMQ_LLM_BACKOFF_S": "0.05",
            "MEMQ_LEASE_S": "5",
            "MEMQ_RECONCILE_EVERY_S": "1",
            "MEMQ_RECONCILE_IDLE_S": "2",
            "MEMQ_RECONCILE_RERING_S": "5",
            "MEMQ_HOME": str(self.tmp / "home"),
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def setup(self) -> None:
        from tests.scripted_llm import ScriptedLLM

        cfg = self.cfg
        tablespace = None
        if self.pg is not None:
            self.pg.init()
            log(f"own Postgres cluster on port {self.pg.port} ({self.pg.dir})")
            if cfg.full_disk:
                tablespace = self.pg.small_tablespace(cfg.disk_mb)
                log(f"database in tablespace {tablespace}: a {cfg.disk_mb} MB tmpfs at {self.pg.small}")
        log(f"database {self.db.name}")
        self.db.create(tablespace=tablespace)
        log(f"broker {self.cfg.broker}: {self.broker.url}")
        self.broker.start()
        if cfg.cut_broker:
            if not hasattr(self.broker, "port"):
                raise RuntimeError("--cut-broker needs the run's own Redis (--broker redis or redis-aof)")
            from tests.chaos.proxy import Proxy

            self.proxy = Proxy("127.0.0.1", self.broker.port).start()
            log(f"worker 0 reaches Redis through the proxy on port {self.proxy.port}")
        self.llm = ScriptedLLM(latency_ms=self.cfg.latency_ms).start()
        if self.cfg.llm_faults:
            self.llm.set_faults(LLM_FAULT_RATES, seed=self.cfg.seed, timeout_s=self.llm_timeout_s + 1,
                                retry_after=1)
        log(f"scripted LLM {self.llm.url} (latency {self.cfg.latency_ms} ms, "
            f"faults {'on' if self.cfg.llm_faults else 'off'})")
        (self.tmp / "logs").mkdir()
        for slot in range(self.cfg.workers):
            url = (self.broker.url.replace(f":{self.broker.port}/", f":{self.proxy.port}/")
                   if self.proxy is not None and slot == 0 else None)
            self.workers.append(harness.Worker(slot, self.worker_env(url), self.tmp / "logs",
                                               self.cfg.concurrency, preload=not self.cfg.cold_workers,
                                               processes=self.cfg.processes).start())
        for w in self.workers:
            w.wait_ready(90)
        log(f"{len(self.workers)} workers ready (logs in {self.tmp / 'logs'})")
        from memq.client import Client

        client = Client.connect(self.settings())
        try:
            for i in range(self.cfg.agents):
                a = client.create_agent(f"chaos-{i}", persona="A terse echo agent.", human="A chaos test.")
                self.agent_ids.append(a.id)
                self.sent[a.id] = []
                self.keys[a.id] = {}
                self.dup_send_mismatch[a.id] = 0
        finally:
            client.close()

    # ----------------------------------------------------------------- senders
    def _send(self, client, agent_id: str, text: str, key: str, deadline: float) -> str | None:
        """Send until memq has it (the same key on every retry); None past the deadline."""
        while True:
            start, t = time.time(), time.monotonic()
            try:
                run_id = client.send(agent_id, text, idempotency_key=key).run_id
                self.send_attempts.append((start, time.monotonic() - t, None, ""))
                return run_id
            except Exception as exc:  # Postgres restarting: retry with the same key
                name = type(exc).__name__
                self.send_attempts.append((start, time.monotonic() - t, name, str(exc).splitlines()[0]
                                           if str(exc) else ""))
                with self.lock:
                    self.send_retries += 1
                    self.send_errors[name] = self.send_errors.get(name, 0) + 1
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.2)

    def sender(self, idx: int, mine: list[tuple[int, str]], t0: float) -> None:
        from memq.client import Client

        rng = random.Random(self.cfg.seed * 1000 + idx)
        client = Client.connect(self.settings())
        twin = Client.connect(self.settings())  # sends the same message at the same time
        window, m = self.cfg.send_window_s, self.cfg.messages
        deadline = t0 + window + self.cfg.timeout_s
        done: list[tuple[str, str, str]] = []
        try:
            for j in range(m):
                for pos, (i, agent_id) in enumerate(mine):
                    at = t0 + window * (j + (pos + 0.5) / len(mine)) / m
                    time.sleep(max(0.0, at - time.monotonic()))
                    text, key = f"agent-{i} msg-{j}", f"chaos-{agent_id}-{j}"
                    racing = rng.random() < self.cfg.dup_send_p / 2
                    if racing:  # two sends of one new message, with one key, at once
                        twin_run: list[str | None] = []
                        t = threading.Thread(target=lambda: twin_run.append(
                            self._send(twin, agent_id, text, key, deadline)))
                        t.start()
                    run_id = self._send(client, agent_id, text, key, deadline)
                    if racing:
                        t.join()
                        with self.lock:
                            self.repeated_sends += 1
                            self.racing_sends += 1
                            if twin_run[0] is not None and twin_run[0] != run_id:
                                self.dup_send_mismatch[agent_id] += 1
                    if run_id is None:
                        with self.lock:
                            self.unsent += 1
                        self.errors.append(f"could not send {text!r} before the deadline")
                        continue
                    with self.lock:
                        self.sent[agent_id].append(text)
                        self.keys[agent_id][text] = key
                        self.run_of_key[key] = run_id
                    done.append((agent_id, text, key))
                    if not racing and rng.random() < self.cfg.dup_send_p / 2:
                        self._repeat(client, agent_id, text, key, deadline)
            # A few repeats long after the first send: still the same run.
            for agent_id, text, key in rng.sample(done, min(3, len(done))):
                self._repeat(client, agent_id, text, key, deadline)
        except Exception:
            self.errors.append(f"sender {idx}: {traceback.format_exc()}")
        finally:
            client.close()
            twin.close()

    def _repeat(self, client, agent_id: str, text: str, key: str, deadline: float) -> None:
        run_id = self._send(client, agent_id, text, key, deadline)
        with self.lock:
            self.repeated_sends += 1
            if run_id is not None and run_id != self.run_of_key[key]:
                self.dup_send_mismatch[agent_id] += 1

    # ---------------------------------------------------------- duplicate bells
    def dup_bells(self) -> None:
        from memq.constants import STEP_TASK
        from workers.celery_app import create_celery_app

        app = create_celery_app(self.settings())
        rng = random.Random(self.cfg.seed + 7)
        while not self.stop.wait(0.05):
            agent_id = rng.choice(self.agent_ids)
            n = rng.randint(5, 12) if rng.random() < 0.1 else 1  # sometimes a burst, one agent
            for _ in range(n):
                try:
                    app.send_task(STEP_TASK, args=[agent_id], queue="interactive")
                    self.dup_doorbells += 1
                except Exception:
                    self.dup_doorbell_errors += 1
                    self.stop.wait(0.5)
                    break

    # ------------------------------------------------------------------- chaos
    def _pg(self, sql: str, params: tuple = (), tries: int = 150) -> list[tuple]:
        """A query that waits out a Postgres restart."""
        last: Exception | None = None
        for _ in range(tries):
            try:
                with psycopg.connect(self.db.url, connect_timeout=3) as conn:
                    return conn.execute(sql, params).fetchall()
            except psycopg.Error as exc:
                last = exc
                time.sleep(0.2)
        raise RuntimeError(f"Postgres did not answer: {last}")

    def _leases_held(self, w: harness.Worker) -> int:
        """How many live leases the worker holds right now (steps in flight); 0 if unknown."""
        try:
            rows = self._pg("SELECT count(*) FROM agents WHERE lease_owner = ANY(%s) AND lease_until_s > %s",
                            (w.memq_worker_ids(), time.time()), tries=1)
            return int(rows[0][0])
        except RuntimeError:  # Postgres restarting
            return 0

    def kill_one(self) -> None:
        """SIGKILL the oldest worker while it has steps in flight and every other worker is up.

        Waits up to 15 s for that state: killing an idle worker tests nothing, and
        killing one while no other worker could take over measures start-up time,
        not recovery. "warm" in the report says whether the state was reached.
        """
        deadline = time.monotonic() + 15
        while True:
            ready = [w for w in self.workers if w.ready()]
            oldest = min(ready, key=lambda w: w.started_at) if ready else None
            warm = (oldest is not None and len(ready) == len(self.workers)
                    and self._leases_held(oldest) > 0)
            if warm or time.monotonic() > deadline:
                break
            if self.stop.wait(0.03):
                return
        if oldest is None:
            raise RuntimeError("no worker became ready to be killed")
        w = oldest  # the oldest: the slots take turns
        kill = Kill(at=time.time(), slot=w.slot, generation=w.generation,
                    memq_worker_ids=w.memq_worker_ids(), warm=warm)
        with self.lock:
            w.kill()
        rows = self._pg(
            "SELECT a.id, a.step_counter, (a.active_run_id IS NOT NULL OR EXISTS (SELECT 1 FROM inbox i "
            "WHERE i.agent_id = a.id AND i.consumed_at IS NULL)) FROM agents a WHERE a.lease_owner = ANY(%s)",
            (kill.memq_worker_ids,))
        kill.leases = len(rows)
        # Only agents with work left must make progress again (a doorbell that found
        # nothing to do, or a step killed after its commit, leaves nothing to recover).
        kill.in_flight = [(r[0], int(r[1])) for r in rows if r[2]]
        self.kills.append(kill)
        log(f"kill {len(self.kills)}: SIGKILL {'' if kill.warm else 'cold '}worker {w.slot} gen {w.generation} "
            f"({','.join(kill.memq_worker_ids)}): it held {kill.leases} lease(s), {len(kill.in_flight)} with work left")
        with self.lock:
            w.start()

    def restart_broker(self) -> None:
        """Freeze the workers so doorbells queue up, restart the broker, thaw them.

        A non-persistent Redis loses the queued doorbells (and every unacked one);
        Redis with AOF and RabbitMQ keep them. Postgres still has all the work.
        """
        import signal

        t = time.time()
        with self.lock:
            frozen = [w for w in self.workers if w.ready()]
        for w in frozen:
            w.signal(signal.SIGSTOP)

        def thaw() -> None:
            for w in frozen:
                w.signal(signal.SIGCONT)

        try:
            time.sleep(self.cfg.freeze_s)
            info = self.broker.restart(on_down=thaw)
        finally:
            thaw()
        self.events.append({"event": "broker_restart", "at": t, "took_s": round(time.time() - t, 2), **info})
        log(f"broker {self.cfg.broker} restarted (workers frozen {self.cfg.freeze_s:g}s first), "
            f"{time.time() - t:.1f}s in all; doorbells queued {info['queued_before']} -> {info['queued_after']}")

    def restart_pg(self) -> None:
        t = time.time()
        took = self.pg.restart() if self.pg is not None else harness.restart_postgres()
        self.events.append({"event": "pg_restart", "at": t, "took_s": round(took, 2)})
        log(f"Postgres restarted in {took:.1f}s")

    def chaos_plans(self) -> list[list[tuple[float, str]]]:
        """Two timelines, each run by its own thread: the kills, and the restarts."""
        cfg = self.cfg
        kills = [(cfg.first_kill_s + k * cfg.kill_every_s, "kill") for k in range(cfg.kills)]
        # One thread runs the restarts and slow faults one after another (each waits out its fault).
        restarts = [(cfg.send_window_s * f + 1.0, name) for f, name in cfg.fault_plan()]
        return [kills, restarts]

    def chaos(self, t0: float, plan: list[tuple[float, str]]) -> None:
        actions = {"kill": self.kill_one, "broker": self.restart_broker, "pg": self.restart_pg,
                   **{name: (lambda f=f: f(self)) for name, f in quiet_faults.ACTIONS.items()}}
        for at, what in sorted(plan):
            if self.stop.wait(max(0.0, t0 + at - time.monotonic())):
                return
            try:
                actions[what]()
            except Exception:
                self.errors.append(f"chaos {what}: {traceback.format_exc()}")
                log(f"chaos action {what} failed: {traceback.format_exc().splitlines()[-1]}")

    # ----------------------------------------------------------------- waiting
    def progress(self) -> tuple[int, int]:
        rows = self._pg(
            "SELECT count(*) FILTER (WHERE status = ANY(%s)), count(*) FROM runs", (list(FINISHED),))
        return int(rows[0][0]), int(rows[0][1])

    def wait_drained(self, threads: list[threading.Thread], t0: float) -> float | None:
        """Wait for the senders and chaos, then for every run to finish; returns when it did."""
        last_log = 0.0
        deadline: float | None = None
        while True:
            alive = any(t.is_alive() for t in threads)
            if not alive and deadline is None:
                deadline = time.monotonic() + self.cfg.timeout_s
            for w in self.workers:
                with self.lock:  # the kill thread starts and kills workers too
                    w.ready()  # notes when a restarted worker is up
                    code = w.exited()
                    if code is not None:  # memq worker died without being killed: a finding
                        msg = (f"worker {w.slot} gen {w.generation} exited by itself (code {code}), "
                               f"log {w.log_path}")
                        log(msg + "; restarting it")
                        self.errors.append(msg)
                        self.unexpected_exits.append({"worker": w.slot, "generation": w.generation,
                                                      "code": code, "log": str(w.log_path)})
                        w.start()
            finished, total = self.progress()
            expected = sum(len(v) for v in self.sent.values())
            if not alive and finished == total and total >= expected:
                return time.monotonic()
            now = time.monotonic()
            if now - last_log >= 5:
                log(f"t+{now - t0:5.1f}s runs finished {finished}/{total} (sent {expected}/"
                    f"{self.cfg.agents * self.cfg.messages}), kills {len(self.kills)}")
                last_log = now
            if deadline is not None and now > deadline:
                log(f"deadline: {total - finished} run(s) still unfinished")
                return None
            time.sleep(0.25)

    # ---------------------------------------------------------------- recovery
    def measure_recovery(self) -> None:
        for k in self.kills:
            times = []
            for agent_id, counter in k.in_flight:
                rows = self._pg(
                    "SELECT min(started_at) FROM steps WHERE agent_id = %s AND step_no > %s",
                    (agent_id, counter))
                if rows and rows[0][0] is not None:
                    times.append((rows[0][0] - _utc(k.at)).total_seconds())
            k.recovered = len(times)
            k.recovery_s = round(max(times), 2) if times else None

    # ------------------------------------------------------------------- waits
    def analyse_waits(self, waits: list, t0: float, long_s: float = 3.0) -> dict[str, Any]:
        """How long work waited for its step; long waits that no fault explains are
        lost wake-ups (work that waited for the reconciler instead of a doorbell)."""
        shift = time.time() - time.monotonic()  # monotonic t0 -> epoch
        spans = [(k.at, k.at) for k in self.kills]
        spans += [(e["at"], e["at"] + e["took_s"]) for e in self.events]
        long, unexplained = 0, []
        longest = 0.0
        for agent_id, step_no, ready, started in waits:
            w = (started - ready).total_seconds()
            longest = max(longest, w)
            if w < long_s:
                continue
            long += 1
            a, b = ready.timestamp(), started.timestamp()
            if not any(s0 <= b and s1 >= a - 0.5 for s0, s1 in spans):
                unexplained.append({"agent": agent_id[:8], "step": step_no, "wait_s": round(w, 2),
                                    "ready_t_s": round(a - (t0 + shift), 2)})
        unexplained.sort(key=lambda u: -u["wait_s"])
        return {"steps": len(waits), "longest_s": round(longest, 2), f"over_{long_s:g}s": long,
                "unexplained": len(unexplained), "unexplained_top": unexplained[:10]}

    # --------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.monotonic()
        self.setup()
        t0 = time.monotonic()
        self.sends_started_at = time.time()
        if cfg.soak_minutes:
            from tests.chaos.soak import Sampler

            self.sampler = Sampler(self, every_s=cfg.sample_every_s).start()
        log(f"sending {cfg.agents}x{cfg.messages} messages over {cfg.send_window_s:.0f}s")
        n_send = max(1, min(cfg.senders, cfg.agents))
        indexed = list(enumerate(self.agent_ids))
        threads = [threading.Thread(target=self.sender, args=(k, indexed[k::n_send], t0), daemon=True,
                                    name=f"sender-{k}") for k in range(n_send)]
        threads += [threading.Thread(target=self.chaos, args=(t0, plan), daemon=True, name=f"chaos-{n}")
                    for n, plan in enumerate(self.chaos_plans())]
        bells = threading.Thread(target=self.dup_bells, daemon=True, name="dup-bells")
        for t in threads:
            t.start()
        if cfg.dup_doorbells:
            bells.start()
        drained_at = self.wait_drained(threads, t0)
        sends_end = max((a[0] + a[1] for a in self.send_attempts), default=time.time())
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler.samples.append(self.sampler.sample())
        self.stop.set()
        if cfg.dup_doorbells:
            bells.join(10)
        for w in self.workers:
            w.stop()
        self.measure_recovery()
        result = check(self.db.url, self.sent, self.keys, self.dup_send_mismatch)
        waits = self.analyse_waits(result.pop("waits"), t0)
        faults = self.llm.faults() if self.llm else {}
        recoveries = [k.recovery_s for k in self.kills if k.recovery_s is not None]
        quiet_faults.annotate_events(self)
        slow = quiet_faults.slow_tail_report(self, sends_end)
        report: dict[str, Any] = {
            "broker": cfg.broker,
            "agents": cfg.agents,
            "messages": result["sent"],
            "messages_planned": cfg.agents * cfg.messages,
            "unsent": self.unsent,
            "repeated_sends": self.repeated_sends,
            "racing_sends": self.racing_sends,
            "send_retries": self.send_retries,
            "send_errors": self.send_errors,
            "kills": len(self.kills),
            "broker_restarts": sum(e["event"] == "broker_restart" for e in self.events),
            "pg_restarts": sum(e["event"] == "pg_restart" for e in self.events),
            "dup_doorbells": self.dup_doorbells,
            "llm_faults": faults.get("counts", {}),
            "lost": result["lost"],
            "duplicated": result["duplicated"],
            "reordered": result["reordered"],
            "overlapping": result["overlapping"],
            "wrong_replies": result["wrong_replies"],
            "failed": result["failed"],
            "failed_llm": result["failed_llm"],
            "failed_gave_up": result["failed_gave_up"],
            "failed_other": result["failed_other"],
            "chain_capped": result["chain_capped"],
            "steps": result["steps"],
            "longest_recovery_s": max(recoveries) if recoveries else None,
            "longest_stall_s": waits["longest_s"],
            "processes": cfg.processes,
            "own_pg": self.pg is not None,
            "faults": [{k: v for k, v in e.items() if k not in ("at",)}
                       for e in self.events],
            "broker_cut": quiet_faults.cut_report(self),
            "doorbell_redeliveries": quiet_faults.doorbell_redeliveries(self.tmp / "logs"),
            "slow_tail": slow,
            "soak": self.sampler.summary() if self.sampler is not None else None,
            "worker_startup_s": [x for w in self.workers for x in w.startup_s],
            "unexpected_worker_exits": self.unexpected_exits,
            "kill_details": [
                {"t_s": round(k.at - self.kills[0].at, 2) if self.kills else 0, "worker": k.slot,
                 "generation": k.generation, "warm": k.warm, "leases": k.leases,
                 "in_flight": len(k.in_flight),
                 "recovered": k.recovered,
                 "restart_meanwhile": any(k.at - 1 <= e["at"] <= k.at + (k.recovery_s or 0) for e in self.events),
                 "recovery_s": k.recovery_s} for k in self.kills
            ],
            "waits": waits,
            "events": self.events,
            "drained": drained_at is not None,
            "elapsed_s": round((drained_at or time.monotonic()) - t0, 1),
            "wall_s": round(time.monotonic() - started, 1),
            "errors": self.errors[:20],
            "notes": result["notes"],
        }
        failures = [k for k in ("lost", "duplicated", "reordered", "overlapping", "wrong_replies")
                    if report[k]]
        if report["failed"] and not cfg.llm_faults:
            failures.append("failed")
        if report["unsent"]:
            failures.append("unsent")
        report["ok"] = not failures
        report["failures"] = failures
        return report

    def cleanup(self, keep_logs: bool) -> None:
        self.stop.set()
        for w in self.workers:
            try:
                w.stop()
            except Exception:
                pass
        if self.llm:
            self.llm.stop()
        if self.proxy is not None:
            self.proxy.stop()
        try:
            self.broker.stop()
        except Exception:
            log(f"broker clean-up failed: {traceback.format_exc().splitlines()[-1]}")
        self.db.drop()
        if self.pg is not None:
            self.pg.stop()
        if keep_logs:
            log(f"logs kept in {self.tmp / 'logs'}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    chaos = ChaosRun(cfg)
    report: dict[str, Any] | None = None
    try:
        report = chaos.run()
    except KeyboardInterrupt:
        log("interrupted")
    except Exception:
        log(f"chaos run crashed:\n{traceback.format_exc()}")
    finally:
        chaos.cleanup(keep_logs=cfg.keep_logs or report is None or not report.get("ok")
                      or bool(report.get("unexpected_worker_exits")))
    if report is None:
        return 2
    print(summary(report), flush=True)
    if cfg.json_out:
        Path(cfg.json_out).write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
