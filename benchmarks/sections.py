"""The four benchmark sections. Each adds rows (figure + baseline) to the Bench and
returns its detailed results for the JSON file.

This module is the index: each section lives in its own module (``sec_overhead``
with ``sec_baselines`` and ``sec_inprocess``, ``sec_throughput``, ``sec_history``,
``sec_startup``; ``sec_common`` holds what they share), and ``SECTIONS`` maps the
names ``--sections`` takes to them, in run order.
"""

from __future__ import annotations

from benchmarks.sec_api import api
from benchmarks.sec_client import client_chain
from benchmarks.sec_baselines import bare_baseline, llm_client_baseline, postgres_baseline
from benchmarks.sec_common import CHAIN, HEARTBEAT_FOREVER, profiled
from benchmarks.sec_history import KEEP_IN_CONTEXT, history, insert_history
from benchmarks.sec_inprocess import PHASE_HOOKS, inprocess_chain
from benchmarks.sec_overhead import overhead
from benchmarks.sec_startup import heaviest_imports, startup
from benchmarks.sec_throughput import THROUGHPUT_LATENCY_MS, throughput

SECTIONS = {
    "overhead": overhead,
    "throughput": throughput,
    "history": history,
    "startup": startup,
    "api": api,
    "client": client_chain,
}

__all__ = [
    "CHAIN",
    "HEARTBEAT_FOREVER",
    "api",
    "KEEP_IN_CONTEXT",
    "PHASE_HOOKS",
    "SECTIONS",
    "THROUGHPUT_LATENCY_MS",
    "bare_baseline",
    "heaviest_imports",
    "history",
    "inprocess_chain",
    "insert_history",
    "llm_client_baseline",
    "overhead",
    "postgres_baseline",
    "profiled",
    "startup",
    "throughput",
]
