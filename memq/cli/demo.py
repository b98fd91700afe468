"""`memq demo`: the whole embedded job in one process, against a real model."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Any

import typer

from memq.cli.connect import load_settings, open_client
from memq.cli.opts import Json
from memq.cli.output import emit_json, error_line, mask_url, note

DEMO_PERSONA = (
    "I am Juniper, the memq demo agent: friendly, brief and curious. Whenever someone tells me "
    "something about themselves (their name, their work, what they like), I save it to my "
    "`human` memory block with core_memory_append before I answer, so I still know it later. "
    "I answer in two or three sentences."
)
DEMO_NAME = "memq-demo"
DEMO_HUMAN = "Nothing is known about this user yet."
SCRIPT = (
    "Hi! I'm Ada. I'm a marine biologist and I spend my weekends diving to count octopuses.",
    "Could you suggest a fun name for my new underwater camera?",
    "Quick check: do you remember my name and what I do for a living?",
)
NO_MODEL_HELP = """\
error: no LLM found: none of MEMQ_LLM_MODEL, OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY is set,
and no Ollama (port 11434) or OpenAI-compatible server (8080, 1234, 8000) answers on 127.0.0.1.
Set an API key above, or MEMQ_LLM_MODEL to a litellm model string, for example
  OpenAI:      MEMQ_LLM_MODEL=openai/gpt-4o-mini  MEMQ_LLM_API_KEY=<your key>
  Anthropic:   MEMQ_LLM_MODEL=anthropic/claude-3-5-haiku-latest  MEMQ_LLM_API_KEY=<your key>
  Ollama:      MEMQ_LLM_MODEL=ollama_chat/llama3.1  MEMQ_LLM_API_BASE=http://localhost:11434
  any OpenAI-compatible server (vLLM, llama.cpp, LM Studio, ...):
               MEMQ_LLM_MODEL=openai/<model>  MEMQ_LLM_API_BASE=http://<host>:<port>/v1
then run `memq demo` again.
"""


def demo(
    interactive: Annotated[
        bool, typer.Option("--interactive", help="Chat with the demo agent instead of the script.")
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete the demo agent of earlier runs and start over.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.")] = 120.0,
    json_out: Json = False,
) -> None:
    """Run memq embedded in this process: talk to the demo agent, show its memory.

    The model is MEMQ_LLM_MODEL or one the user already has (an API key in the
    environment or a local server: memq/detect.py). One demo agent is kept across runs.
    """
    import os

    from memq.cli.talk import _check_timeout
    from memq.detect import fill_model

    _check_timeout(timeout)
    settings = load_settings(force_embedded=True)
    settings, found = fill_model(settings, os.environ)
    with open_client(settings) as client:  # embedded SQLite: the schema is upgraded here
        if not settings.llm_model:
            sys.stderr.write(NO_MODEL_HELP)
            raise typer.Exit(1)
        if found is not None and not json_out:
            note(found.announce())
        agent, reused = _demo_agent(client, fresh)
        where = {"home": str(settings.home.resolve()),
                 "database": mask_url(settings.resolved_database_url)}
        if interactive:
            turns, ok = _interactive(client, agent, timeout, json_out)
        else:
            turns, ok = _scripted(client, agent, reused, timeout, json_out)
        memory = [b.model_dump() for b in client.memory(agent.id)]
    if json_out:
        emit_json({"agent_id": agent.id, "reused": reused, "model": settings.llm_model,
                   "commands": _commands(agent.id), "turns": turns, "memory": memory, **where})
    elif ok:
        _epilogue(agent, memory, where, remind_env=found is None)
    if not ok:
        raise typer.Exit(1)


def _demo_agent(client: Any, fresh: bool) -> tuple[Any, bool]:
    """The demo agent of an earlier run (found by name), or a new one; --fresh deletes old ones."""
    earlier = [a for a in client.list_agents() if a.name == DEMO_NAME]
    if fresh:
        for a in earlier:
            client.delete_agent(a.id)
    elif earlier:
        return earlier[0], True
    return client.create_agent(DEMO_NAME, persona=DEMO_PERSONA, human=DEMO_HUMAN), False


def _commands(agent_id: str) -> list[str]:
    """The follow-up commands, spelled so that they work as printed."""
    from memq.cli.live import launcher

    run = launcher()
    if os.environ.get("MEMQ_DATABASE_URL") or os.environ.get("MEMQ_BROKER_URL"):
        run = "env -u MEMQ_DATABASE_URL -u MEMQ_BROKER_URL " + run  # the demo's data is embedded
    return [f"{run} chat {agent_id}", f"{run} messages {agent_id}", f"{run} memory show {agent_id}",
            f"{run} demo --fresh"]


def _interactive(client: Any, agent: Any, timeout: float, json_out: bool) -> tuple[list, bool]:
    from memq.cli.chat import chat_loop

    if not json_out:
        from memq.cli.output import console

        console().print(f"chatting with the demo agent {agent.id}", markup=False)
    return chat_loop(client, agent.id, timeout_s=timeout, json_out=json_out), True


def _scripted(client: Any, agent: Any, reused: bool, timeout: float, json_out: bool) -> tuple[list, bool]:
    """Send the scripted user lines one by one, showing each step as it commits; stop at the
    first run that does not finish well."""
    from memq.cli.chat import send_and_show, turn_doc

    out = None
    if not json_out:
        from rich.text import Text

        from memq.cli.live import launcher
        from memq.cli.output import console

        out = console()
        earlier = f" (kept from an earlier run; `{launcher()} demo --fresh` starts over)" if reused else ""
        out.print(Text.assemble(("memq demo", "bold"), f": agent {agent.id}{earlier}, model ",
                                (client.settings.llm_model or "", "bold"), "\n"))
    turns: list[dict] = []
    for line in SCRIPT:
        if out is not None:
            out.print(Text.assemble(("you: ", "bold cyan"), line))
        started = time.monotonic()
        run = send_and_show(client, agent.id, line, timeout_s=timeout, json_out=json_out)
        turns.append(turn_doc(line, run))
        if out is not None:
            if not run.replies:
                out.print(Text("(the agent sent no reply this turn)", style="dim"))
            steps = f"{run.steps} step" + ("s" if run.steps != 1 else "")
            out.print(Text(f"{run.status} · {steps} · "
                           f"{time.monotonic() - started:.1f} s\n", style="dim"))
        if run.status == "failed":
            error_line(f"run {run.run_id} failed: {run.error or 'no error recorded'}")
            return turns, False
        if run.status not in ("done", "chain_capped"):
            error_line(f"run {run.run_id} still {run.status} after {timeout:g} s")
            return turns, False
    return turns, True


def _epilogue(agent: Any, memory: list[dict], where: dict, *, remind_env: bool) -> None:
    from rich.panel import Panel
    from rich.text import Text

    from memq.cli.output import console

    out = console()
    out.print(Text("What the agent keeps in its core memory now:", style="bold"))
    for b in memory:
        title = f"{b['label']}  [{len(b['value'])}/{b['limit']} chars]"
        out.print(Panel(Text(b["value"]), title=title, title_align="left"))
    out.print(Text.assemble(("Where the data lives: ", "bold"), _db_path(where["database"]),
                            f" (MEMQ_HOME={where['home']})"))
    out.print(Text("Every message, run and memory edit is stored there; carry on with:", style="dim"))
    for cmd in _commands(agent.id):
        out.print(Text("  " + cmd, style="cyan"))
    if remind_env:
        out.print(Text("(in a shell with the same MEMQ_LLM_* settings as this demo)", style="dim"))


def _db_path(url: str | None) -> str:
    """The file of an SQLite URL, else the (masked) URL itself."""
    url = url or ""
    return "SQLite file " + url.split(":///", 1)[1] if url.startswith("sqlite:///") else url
