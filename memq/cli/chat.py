"""The interactive loop behind `memq chat` and `memq demo --interactive`."""

from __future__ import annotations

import sys
from typing import Any

from rich.text import Text

from memq.cli import live, render
from memq.cli.output import console, err_console
from memq.text import clean_text

QUIT = {"/quit", "/exit", "/q"}
HELP = "type a message; /memory shows core memory; /quit (or Ctrl-D) leaves"


def _read_line(json_out: bool) -> str | None:
    """One line from the user; None at end of input."""
    try:
        if json_out:  # stdout belongs to the JSON document: no prompt
            line = sys.stdin.readline()
            return line.rstrip("\n") if line else None
        return console().input(Text("you> ", style="bold cyan"))
    except EOFError:
        return None


def turn_doc(message: str, run: Any) -> dict[str, Any]:
    return {
        "message": message,
        "run_id": run.run_id,
        "status": run.status,
        "replies": run.replies,
        "steps": run.steps,
        "error": run.error,
    }


def chat_loop(client: Any, agent_id: str, *, timeout_s: float, json_out: bool) -> list[dict]:
    """Send each line with wait and show the replies; returns the turns."""
    from storage.repository.errors import BadInput

    turns: list[dict] = []
    # A stray byte typed or piped in arrives as a lone surrogate, like a bad argv byte, and is
    # cleaned at the door with a warning (memq/text.py) instead of ending the chat.
    reconfigure = getattr(sys.stdin, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="surrogateescape")
    if not json_out:
        err_console().print(Text(HELP, style="dim"))
    while True:
        try:
            line = _read_line(json_out)
        except KeyboardInterrupt:
            line = None
        if line is None or line.strip() in QUIT:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/memory":
            if not json_out:
                render.blocks(client.memory(agent_id))
            continue
        try:
            run = send_and_show(client, agent_id, text, timeout_s=timeout_s, json_out=json_out)
        except BadInput as exc:
            if json_out:
                turns.append({"message": clean_text(text)[0], "error": str(exc)})
            else:
                err_console().print(Text(f"error: {exc}", style="red"))
            continue
        turns.append(turn_doc(clean_text(text)[0], run))  # as stored; the send warned of what it replaced
        if not json_out:
            show_turn(run, timeout_s)
    return turns


def send_and_show(client: Any, agent_id: str, text: str, *, timeout_s: float, json_out: bool) -> Any:
    """Send one message and wait for its run, showing each step as it commits (not with --json).

    Ctrl-C while waiting leaves at once (exit 130), saying how to follow the run.
    """
    after_id = 0 if json_out else live.last_message_id(client, agent_id)
    run = client.send(agent_id, text)
    try:
        if json_out:
            return live.wait(client, run.run_id, timeout_s=timeout_s)
        return live.follow(client, agent_id, run.run_id, after_id=after_id, timeout_s=timeout_s)
    except KeyboardInterrupt:
        live.exit_interrupted(run.run_id, agent_id, embedded=client.settings.embedded)


def show_turn(run: Any, timeout_s: float) -> None:
    """What went wrong with one waited-for run, if anything did (its replies were shown live)."""
    out = console()
    if run.status == "failed":
        out.print(Text(f"(run failed: {run.error})", style="red"))
    elif run.status == "chain_capped":
        out.print(Text("(the agent hit the step cap for one turn)", style="yellow"))
    elif run.status not in ("done",):
        out.print(Text(f"(still {run.status} after {timeout_s:g}s; run {run.run_id})", style="yellow"))
    elif not run.replies:
        out.print(Text("(no reply this turn)", style="dim"))
