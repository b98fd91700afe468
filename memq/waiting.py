"""Waiting for a run to finish, shared by the full client and the CLI's quick path."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from memq.constants import RunStatus


def wait_for_run(get_run: Callable[[str], Any], run_id: str, timeout_s: float) -> Any:
    """Poll get_run until the run has finished or timeout_s passed; returns its latest state."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        run = get_run(run_id)
        if RunStatus(run.status).finished or time.monotonic() >= deadline:
            return run
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.2)
