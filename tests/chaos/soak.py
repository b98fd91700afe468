"""Soak figures: worker RSS and Postgres table/index sizes, sampled every minute.

``Sampler(run).start()`` samples at once and then every ``every_s``; ``summary()``
says whether RSS stayed flat after warm-up (the first ``warmup_samples``, or the
first tenth of the samples if that is more, are left out: a least-squares slope of
the workers' summed RSS, and the growth as a share of it per hour) and how many
bytes of table and index each processed message cost.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.chaos.harness import log

TABLES = ("agents", "inbox", "runs", "messages", "steps")


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
    return total


def rss_slope(minutes: list[float], rss_mb: list[float]) -> float:
    """MB per minute: the least-squares line through the samples (one step of a few MB at
    the end does not decide it, as it would for last minus first)."""
    from statistics import linear_regression

    return linear_regression(minutes, rss_mb).slope


class Sampler:
    def __init__(self, run: Any, every_s: float = 60.0, warmup_samples: int = 2) -> None:
        self.run = run
        self.every_s = every_s
        self.warmup = warmup_samples
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="soak-sampler")
        self._t0 = time.monotonic()

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def sample(self) -> dict[str, Any]:
        with self.run.lock:
            rss = {f"w{w.slot}": rss_bytes(w.pids()) for w in self.run.workers}
        with psycopg.connect(self.run.db.url, connect_timeout=5) as conn:
            sizes = {t: conn.execute("SELECT pg_table_size(%s), pg_indexes_size(%s)", (t, t)).fetchone()
                     for t in TABLES}
            done = conn.execute("SELECT count(*) FROM runs WHERE finished_at IS NOT NULL").fetchone()[0]
        s = {"t_min": round((time.monotonic() - self._t0) / 60, 2), "done": done,
             "rss_mb": {k: round(v / 2**20, 1) for k, v in rss.items()},
             "table_mb": round(sum(v[0] for v in sizes.values()) / 2**20, 2),
             "index_mb": round(sum(v[1] for v in sizes.values()) / 2**20, 2),
             "per_table_kb": {t: [v[0] // 1024, v[1] // 1024] for t, v in sizes.items()}}
        log(f"soak t+{s['t_min']:.1f}min done {done} rss {s['rss_mb']} tables {s['table_mb']} MB "
            f"indexes {s['index_mb']} MB")
        return s

    def _loop(self) -> None:
        while True:
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # a sample lost to a fault is only a gap in the curve
                log(f"soak sample failed: {exc}")
            if self._stop.wait(self.every_s):
                return

    def summary(self) -> dict[str, Any]:
        s = self.samples
        if len(s) < 2:
            return {"samples": s}
        warm = s[max(self.warmup, len(s) // 10):]
        if len(warm) < 2:
            warm = s[-2:]
        total = [sum(x["rss_mb"].values()) for x in warm]
        minutes = warm[-1]["t_min"] - warm[0]["t_min"]
        done = s[-1]["done"] - s[0]["done"]
        table_b = (s[-1]["table_mb"] - s[0]["table_mb"]) * 2**20
        index_b = (s[-1]["index_mb"] - s[0]["index_mb"]) * 2**20
        slope = rss_slope([x["t_min"] for x in warm], total) if minutes > 0 else None
        return {
            "samples": s,
            "rss_after_warmup_mb": {"from_min": round(warm[0]["t_min"], 1), "first": round(total[0], 1),
                                    "last": round(total[-1], 1), "min": round(min(total), 1),
                                    "max": round(max(total), 1),
                                    "slope_mb_per_min": round(slope, 3) if slope is not None else None,
                                    "growth_pct_per_hour": round(slope * 60 / total[0] * 100, 2)
                                    if slope is not None else None},
            "messages_processed": done,
            "table_bytes_per_message": round(table_b / done) if done else None,
            "index_bytes_per_message": round(index_b / done) if done else None,
        }
