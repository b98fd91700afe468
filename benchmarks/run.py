"""memq benchmarks, one command:

    python -m benchmarks.run [--quick] [--out bench-results.json] [--sections overhead,history]

Against real services: a fresh Postgres database ``memq_bench_<hex>`` (dropped at
the end), an empty Redis db index (flushed), a real ``memq worker`` subprocess
(threads pool, concurrency 500, MEMQ_MAX_CHAIN=40) and the scripted LLM
(``tests/scripted_llm.py``) in its own process. Every figure is printed beside
a baseline measured in the same run.

Sections:
  overhead    ms/step of a 40-step heartbeat chain (0-ms LLM) vs a bare Celery hop;
              the LLM client in-process vs plain httpx
  throughput  steps/s with 10, 100, 500 agents in flight at 1000-ms LLM latency vs ideal
  history     one step with 10 vs 100 000 messages of history
  startup     `memq --help`, `memq send`, worker ready time and RSS
  api         `memq serve` from HTTP clients: blocking send p50/p95, 20 x 10 throughput, CPU per
              message and RSS, vs a bare FastAPI echo, the worker alone and the CLI
  client      the 40-step chain as a client sees it (Python client and `memq send --wait`), with an
              embedding model set so recall indexing runs, vs a bare Celery hop

`--profile DIR` also records the worker with py-spy (if installed) during the
overhead and throughput runs, as collapsed stacks; `python -m
benchmarks.profile_summary DIR/*.collapsed` says where the step's time goes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from benchmarks.env import loadavg, machine, steal_mark, steal_pct  # noqa: E402
from benchmarks.harness import WORKER_CONCURRENCY, Bench  # noqa: E402
from benchmarks.report import print_table, write_json  # noqa: E402
from benchmarks.sections import SECTIONS  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (10/100 agents, 10 000 history)")
    ap.add_argument("--out", type=Path, default=Path("bench-results.json"), help="JSON results file")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of: {','.join(SECTIONS)}")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="py-spy record the worker into DIR (needs py-spy)")
    ap.add_argument("--profile-mode", choices=("cpu", "wall"), default="cpu",
                    help="cpu: sample the GIL holder only; wall: every thread, idle included")
    ap.add_argument("--keep-logs", action="store_true", help="keep worker logs (path printed)")
    a = ap.parse_args(argv)
    a.section_list = [s.strip() for s in a.sections.split(",") if s.strip()]
    unknown = [s for s in a.section_list if s not in SECTIONS]
    if unknown or not a.section_list:
        ap.error(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    return a


LOST_CONNECTION = {"OperationalError", "AdminShutdown", "InterfaceError", "ConnectionError",
                   "ConnectionRefusedError", "ConnectionResetError", "BrokenPipeError"}


def lost_connection(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ in LOST_CONNECTION:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def wait_for_services(b: Bench, timeout_s: float = 90.0) -> None:
    """Until the bench database and Redis answer again, and the worker runs steps."""
    import psycopg
    import redis

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(b.db.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            redis.Redis.from_url(b.redis_url, socket_timeout=2).ping()
            break
        except Exception:  # noqa: BLE001
            time.sleep(1.0)
    # The worker is back when a fresh agent's message goes through twice in a row.
    while time.monotonic() < deadline:
        try:
            agent = b.new_agent("bench-recover")
            if all(b.send_and_wait(agent.id, f"probe {i}", timeout_s=30).status == "done" for i in range(2)):
                return
        except Exception:  # noqa: BLE001
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    mach = machine()
    print(f"memq benchmarks ({'quick' if args.quick else 'full'}): {', '.join(args.section_list)}", flush=True)
    print(f"machine: {mach['nproc']} CPU, {mach['cpu_model']}, Python {mach['python']}", flush=True)
    b = Bench(quick=args.quick, keep_logs=args.keep_logs)
    b.profile_dir = args.profile  # type: ignore[attr-defined]
    b.profile_mode = args.profile_mode  # type: ignore[attr-defined]
    doc: dict = {
        "when": datetime.now(timezone.utc).isoformat(),
        "quick": args.quick,
        "machine": mach,
        "config": {"worker_concurrency": WORKER_CONCURRENCY, "worker_pool": "threads", "max_chain": 40},
        "sections": {},
        "errors": {},
    }
    failed = False
    try:
        t = time.perf_counter()
        b.start()
        doc["setup_s"] = time.perf_counter() - t
        doc["database"] = b.db.name
        doc["redis"] = b.redis_url
        print(f"services up in {doc['setup_s']:.1f} s (worker ready in {b.worker_facts['ready_s']:.2f} s)",
              flush=True)
        for name in args.section_list:
            t = time.perf_counter()
            load0, steal0 = loadavg(), steal_mark()
            print(f"… {name} (load average {load0})", flush=True)
            for attempt in (1, 2):
                mark = len(b.rows)
                try:
                    doc["sections"][name] = SECTIONS[name](b)
                    break
                except Exception as exc:  # noqa: BLE001 - report and go on with the next section
                    del b.rows[mark:]
                    if attempt == 1 and lost_connection(exc):
                        # Another process on this machine restarted Postgres or Redis.
                        print(f"  {name}: lost a connection ({type(exc).__name__}); retrying once", flush=True)
                        doc.setdefault("retried", {})[name] = f"{type(exc).__name__}: {exc}"[:500]
                        wait_for_services(b)
                        continue
                    failed = True
                    doc["errors"][name] = f"{type(exc).__name__}: {exc}"
                    traceback.print_exc()
            doc["sections"].setdefault(name, {})["section_s"] = time.perf_counter() - t
            doc["sections"][name]["loadavg"] = [load0, loadavg()]
            doc["sections"][name]["cpu_steal_pct"] = steal_pct(steal0)
            print(f"  {name}: {doc['sections'][name]['section_s']:.1f} s, CPU steal "
                  f"{doc['sections'][name]['cpu_steal_pct']} %", flush=True)
        doc["worker"] = dict(b.worker_facts)
        if b.worker is not None:
            doc["worker_log_tail"] = b.worker.tail(1500) if failed else None
    except Exception as exc:  # noqa: BLE001
        failed = True
        doc["errors"]["setup"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        b.stop()
        if args.keep_logs:
            print(f"logs kept in {b.tmp}")
    doc["sections"].pop("_bare", None)
    b.results.pop("_bare", None)
    doc["rows"] = [r.as_dict() for r in b.rows]
    doc["total_s"] = time.perf_counter() - started
    doc["machine"]["loadavg_at_end"] = os.getloadavg()
    write_json(args.out, doc)
    print_table(b.rows, mach, f"memq benchmarks — {'quick' if args.quick else 'full'} run")
    print(f"total {doc['total_s']:.1f} s; results in {args.out}")
    if failed:
        print(f"errors: {doc['errors']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
