"""The worker supervisor's own rules, with small real child processes in place of Celery workers:
a crash-looping child is given up (with backoff, not a tight loop), and signals are forwarded
(the first as SIGTERM, a second as SIGQUIT), with the exit code saying how it ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent("""
    import logging, sys
    from workers.supervisor import RestartPolicy, Supervisor
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    child = [sys.executable, "-c", sys.argv[1]]
    policy = RestartPolicy(backoff_s=0.1, max_backoff_s=0.4, stable_s=30, max_failures=3)
    sys.exit(Supervisor(2, lambda slot: child, policy=policy, poll_s=0.02).run())
""")


def _supervise(child_code: str) -> subprocess.Popen:
    """The supervisor in a process group of its own (with its children), for _finish to clean up."""
    return subprocess.Popen([sys.executable, "-c", DRIVER, child_code], cwd=REPO, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _finish(proc: subprocess.Popen, timeout_s: float = 30) -> str:
    """Its stderr once it has exited; on a timeout the whole group is killed (no strays)."""
    try:
        return proc.communicate(timeout=timeout_s)[1]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _child(mark: Path, stops_on: str, ignores: str | None = None) -> str:
    """A child program that waits until ``stops_on`` arrives, then leaves MARK<pid> and exits 0."""
    ignore = f"signal.signal(signal.{ignores}, signal.SIG_IGN)" if ignores else ""
    return textwrap.dedent(f"""
        import os, signal, sys, time
        def stop(*_):
            open({str(mark)!r} + str(os.getpid()), "w").close()
            sys.exit(0)
        {ignore}
        signal.signal(signal.{stops_on}, stop)
        while True:
            time.sleep(0.05)
    """)


def test_a_child_that_keeps_crashing_is_restarted_with_backoff_then_left_down():
    # given children that exit with code 3 as soon as they start
    t0 = time.monotonic()
    proc = _supervise("raise SystemExit(3)")
    # when the supervisor runs them
    err = _finish(proc)
    elapsed = time.monotonic() - t0
    # then each was started 3 times, waiting 0.1 s then 0.2 s between starts, and left down
    assert proc.returncode == 1, err
    assert err.count("started") == 6
    assert "restarting it in 0.1 s" in err and "restarting it in 0.2 s" in err
    assert err.count("exited (code 3) 3 times in a row") == 2
    assert "every worker process crash-looped" in err
    assert elapsed > 0.3


def test_sigterm_is_forwarded_and_a_clean_stop_exits_0(tmp_path):
    # given children that finish their work on SIGTERM (as Celery's warm shutdown does)
    proc = _supervise(_child(tmp_path / "stopped", stops_on="SIGTERM"))
    time.sleep(1.5)
    # when the supervisor gets SIGTERM
    proc.send_signal(signal.SIGTERM)
    err = _finish(proc)
    # then both children got it, and the supervisor exits 0
    assert proc.returncode == 0, err
    assert len(list(tmp_path.glob("stopped*"))) == 2
    assert "2 process(es) exited cleanly" in err


def test_a_second_signal_stops_the_children_cold(tmp_path):
    # given children that ignore SIGTERM (steps still in flight) but stop on SIGQUIT
    proc = _supervise(_child(tmp_path / "cold", stops_on="SIGQUIT", ignores="SIGTERM"))
    time.sleep(1.5)
    # when the supervisor gets SIGINT (Ctrl-C), then another
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # the children are still finishing
    proc.send_signal(signal.SIGINT)
    err = _finish(proc)
    # then the children got SIGQUIT and the supervisor is gone
    assert len(list(tmp_path.glob("cold*"))) == 2, err
    assert "stopping at once" in err
    assert proc.returncode == 0, err
