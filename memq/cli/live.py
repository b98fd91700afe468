"""Waiting for a run while showing its steps as they commit (`memq chat`, `memq demo`).

A step commits its messages in one transaction, so polling the agent's newest
messages shows whole steps; each message is shown once. A spinner runs while
the model thinks. Ctrl-C is the caller's: ``interrupted()`` says what happens then.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any, NoReturn

from memq.cli import render
from memq.cli.output import console

POLL_S = 0.15
NUDGE_S = 1.0  # embedded: how often a wait rings agents whose work waits (e.g. after a lease expired)
EXIT_INTERRUPTED = 130
PAGE = 200  # newest messages read per poll (a poll sees a few steps at most)


def last_message_id(client: Any, agent_id: str) -> int:
    """The id of the agent's newest message (0 when it has none): what to show after."""
    newest = client.messages(agent_id, limit=1)
    return newest[-1].id if newest else 0


class _Nudger:
    """Embedded mode: while a command waits, ring agents with waiting work once a second, so
    work left by an interrupted process (its lease expired) resumes here."""

    def __init__(self, client: Any) -> None:
        self.ring_waiting = getattr(getattr(client, "doorbell", None), "ring_waiting", None)
        self.last = time.monotonic()

    def __call__(self) -> None:
        if self.ring_waiting is not None and time.monotonic() - self.last >= NUDGE_S:
            self.last = time.monotonic()
            self.ring_waiting()


def wait(client: Any, run_id: str, *, timeout_s: float) -> Any:
    """Poll the run until it finishes or timeout_s passed; returns its latest state."""
    from memq.constants import RunStatus

    deadline = time.monotonic() + timeout_s
    nudge = _Nudger(client)
    delay = 0.005
    while True:
        run = client.get_run(run_id)
        if RunStatus(run.status).finished or time.monotonic() >= deadline:
            return run
        nudge()
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.2)


def follow(client: Any, agent_id: str, run_id: str, *, after_id: int, timeout_s: float) -> Any:
    """Show each new message of the agent until the run finishes (or timeout_s); returns the run."""
    from memq.constants import RunStatus

    out = console()
    deadline = time.monotonic() + timeout_s
    seen = after_id
    nudge = _Nudger(client)
    with out.status("thinking…", spinner="dots") as spinner:
        while True:
            run = client.get_run(run_id)  # before the messages: a finished run's steps are all visible
            fresh = [m for m in client.messages(agent_id, limit=PAGE) if m.id > seen]
            if fresh:
                seen = fresh[-1].id
                for line in render.step_lines(fresh, own_run_id=run_id):
                    out.print(line)
            if RunStatus(run.status).finished or time.monotonic() >= deadline:
                return run
            if run.status == RunStatus.RUNNING:
                spinner.update(f"thinking… (step {run.steps + 1})")
            nudge()
            time.sleep(POLL_S)


def launcher() -> str:
    """How to type `memq` so that a printed command works as printed.

    ``./run`` says how it was called (MEMQ_LAUNCHER, e.g. ``./run memq``); else ``memq``
    when that is this program on PATH; else this program's full path.
    """
    given = os.environ.get("MEMQ_LAUNCHER")
    if given:
        return given
    me = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    on_path = shutil.which("memq")
    if on_path and (not me or os.path.basename(me) != "memq" or os.path.samefile(on_path, me)):
        return "memq"
    if me and os.path.basename(me) == "memq":
        return me
    return f"{sys.executable} -m memq.cli.main"


def exit_interrupted(run_id: str, agent_id: str, *, embedded: bool) -> NoReturn:
    """Ctrl-C during a wait: say the run goes on and how to follow it; exit 130 at once.

    Embedded, the step in flight runs on a thread of this process: the process exits
    without waiting for it; its uncommitted step is redone, once its lease expires, by
    `memq worker` or the next chat / send --wait to this agent.
    """
    line = f"interrupted; run {run_id} goes on — follow it with: {launcher()} messages {agent_id}"
    if embedded:
        line += " (embedded: it resumes in `memq worker` or the next chat / send --wait to this agent)"
    sys.stdout.flush()
    sys.stderr.write("\n" + line + "\n")
    sys.stderr.flush()
    if embedded:
        os._exit(EXIT_INTERRUPTED)  # step threads are not daemons: do not wait for the LLM call
    import typer

    raise typer.Exit(EXIT_INTERRUPTED)
