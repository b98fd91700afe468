"""`memq send`, `memq chat`, `memq messages`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from memq.cli.connect import open_client
from memq.cli.opts import AgentId, Json
from memq.cli.output import CLIError, emit_json, error_line, note

EXIT_TIMEOUT = 3

Timeout = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for a run.", show_default=True)
]


def _check_timeout(timeout: float) -> None:
    if not timeout > 0:
        raise CLIError(f"--timeout must be above 0 (got {timeout:g})")


def send(
    agent_id: AgentId,
    text: Annotated[str, typer.Argument(help="The message.", show_default=False)],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to finish.")] = False,
    timeout: Timeout = 120.0,
    idempotency_key: Annotated[
        Optional[str], typer.Option("--idempotency-key", help="Repeat-safe key for this message.")
    ] = None,
    json_out: Json = False,
) -> None:
    """Send a message to an agent (exit 0 done/queued, 1 failed, 3 --wait timed out)."""
    _check_timeout(timeout)
    from memq.constants import RunStatus

    # Embedded without --wait the message is only queued (no step starts here).
    with open_client(run_steps=wait) as client:
        agent_id = client.resolve_agent(agent_id)
        run = client.send(
            agent_id, text, idempotency_key=idempotency_key, wait=wait, timeout_s=timeout
        )
        timed_out = wait and not RunStatus(run.status).finished
        if json_out:
            emit_json(run.model_dump())
        else:
            from memq.cli import render

            render.run_result(run, waited=wait, timed_out=timed_out)
            if timed_out and client.settings.embedded:
                note("embedded mode: the step in flight finishes before this process exits")
            elif not wait and client.settings.embedded:
                note("embedded mode: queued only; `memq worker` or the next "
                     "`memq send --wait` / `memq chat` to this agent runs it")
        if run.status == RunStatus.FAILED:
            error_line(f"run {run.run_id} failed: {run.error or 'no error recorded'}")
    if run.status == RunStatus.FAILED:
        raise typer.Exit(1)
    if timed_out:
        raise typer.Exit(EXIT_TIMEOUT)


def chat(agent_id: AgentId, timeout: Timeout = 120.0, json_out: Json = False) -> None:
    """Talk with an agent interactively (/quit or Ctrl-D leaves)."""
    _check_timeout(timeout)
    from memq.cli.chat import chat_loop

    with open_client() as client:
        agent_id = client.resolve_agent(agent_id)
        agent = client.get_agent(agent_id)
        if not json_out:
            from rich.text import Text

            from memq.cli.output import console

            console().print(Text.assemble("chatting with ", (agent.name, "bold"), f" ({agent.id})"))
        turns = chat_loop(client, agent_id, timeout_s=timeout, json_out=json_out)
    if json_out:
        emit_json({"agent_id": agent_id, "turns": turns})


def messages(
    agent_id: AgentId,
    limit: Annotated[int, typer.Option("--limit", help="How many of the last messages.")] = 100,
    json_out: Json = False,
) -> None:
    """The agent's raw message record, oldest first (the last --limit of them)."""
    if limit < 1:
        raise CLIError(f"--limit must be at least 1 (got {limit})")
    with open_client() as client:
        agent_id = client.resolve_agent(agent_id)
        items = client.messages(agent_id, limit=limit)
    if json_out:
        emit_json({"messages": [m.model_dump() for m in items]})
        return
    from memq.cli import render

    render.transcript(items)


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.command("chat")(chat)
    app.command("messages")(messages)
