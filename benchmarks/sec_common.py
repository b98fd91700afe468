"""What the sections share: the chain length, the heartbeat-forever reply, and an optional
py-spy profile of the memq worker."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from benchmarks.harness import Bench

CHAIN = 40
HEARTBEAT_FOREVER = {"tool": "send_message", "args": {"message": "x", "request_heartbeat": True}}


@contextlib.contextmanager
def profiled(b: Bench, name: str) -> Iterator[None]:
    """py-spy record of the memq worker while the block runs (only with --profile DIR)."""
    out_dir: Path | None = getattr(b, "profile_dir", None)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if out_dir is None or b.worker is None or not Path(spy).exists():
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    # cpu: only the thread holding the GIL is sampled (where the Python CPU goes);
    # wall: every thread, idle or not (where the time goes, waits included).
    mode = getattr(b, "profile_mode", "cpu")
    flags = ["--gil"] if mode == "cpu" else ["--idle"]
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(b.worker.pid), "--rate", "250", "--threads", *flags,
         "--format", "raw", "--output", str(out_dir / f"{name}.{mode}.collapsed"), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
