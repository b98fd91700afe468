"""`memq send`, `memq chat`, `memq messages`."""

from __future__ import annotations

from typing import Annotated, Any, Optional

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
    provider_batch: Annotated[bool, typer.Option(
        "--provider-batch", help="The run's steps go through the provider's batch API: half price, one "
        "provider round per step (minutes to hours); needs `memq beat`.")] = False,
    json_out: Json = False,
) -> None:
    """Send a message to an agent (exit 0 done/queued, 1 failed, 3 --wait timed out)."""
    _check_timeout(timeout)
    from memq.constants import RunStatus

    # Embedded without --wait the message is only queued (no step starts here).
    with open_client(settings_for_steps(announce=not json_out) if wait else None, run_steps=wait) as client:
        agent_id = client.resolve_agent(agent_id)
        run = client.send(agent_id, text, idempotency_key=idempotency_key,
                          llm_mode="provider_batch" if provider_batch else "normal")
        if wait:
            run = _wait(client, run, agent_id, timeout, json_out)
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


def settings_for_steps(*, announce: bool) -> Any:
    """Settings for a command that runs steps itself: embedded with no MEMQ_LLM_MODEL, the model
    the user already has (memq/detect.py), said in one line on stderr."""
    import os

    from memq.cli.connect import load_settings

    settings = load_settings()
    if not settings.embedded:
        return settings
    from memq.detect import fill_model

    settings, found = fill_model(settings, os.environ)
    if found is not None and announce:
        note(found.announce())
    return settings


def _wait(client: Any, run: Any, agent_id: str, timeout: float, json_out: bool) -> Any:
    """Wait for the run; Ctrl-C leaves at once (exit 130) saying how to follow it."""
    from memq.cli import live

    try:
        return live.wait(client, run.run_id, timeout_s=timeout)
    except KeyboardInterrupt:
        if json_out:
            emit_json(client.get_run(run.run_id).model_dump())
        live.exit_interrupted(run.run_id, agent_id, embedded=client.settings.embedded)


def chat(agent_id: AgentId, timeout: Timeout = 120.0, json_out: Json = False) -> None:
    """Talk with an agent interactively (/quit or Ctrl-D leaves; Ctrl-C while it works exits 130)."""
    _check_timeout(timeout)
    from memq.cli.chat import chat_loop

    with open_client(settings_for_steps(announce=not json_out)) as client:
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
