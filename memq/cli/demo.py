"""`memq demo`: the whole embedded job in one process, against a real model."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from memq.cli.connect import load_settings, open_client
from memq.cli.opts import Json
from memq.cli.output import emit_json, error_line, mask_url

DEMO_PERSONA = (
    "I am Juniper, the memq demo agent: friendly, brief and curious. Whenever someone tells me "
    "something about themselves (their name, their work, what they like), I save it to my "
    "`human` memory block with core_memory_append before I answer, so I still know it later. "
    "I answer in two or three sentences."
)
DEMO_HUMAN = "Nothing is known about this user yet."
SCRIPT = (
    "Hi! I'm Ada. I'm a marine biologist and I spend my weekends diving to count octopuses.",
    "Could you suggest a fun name for my new underwater camera?",
    "Quick check: do you remember my name and what I do for a living?",
)
NO_MODEL_HELP = """\
error: no LLM configured: set MEMQ_LLM_MODEL to a litellm model string, for example
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
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.")] = 120.0,
    json_out: Json = False,
) -> None:
    """Run memq embedded in this process: create an agent, talk to it, show its memory."""
    from memq.cli.talk import _check_timeout

    _check_timeout(timeout)
    settings = load_settings(force_embedded=True)
    with open_client(settings) as client:  # embedded SQLite: the schema is upgraded here
        if not settings.llm_model:
            sys.stderr.write(NO_MODEL_HELP)
            raise typer.Exit(1)
        agent = client.create_agent("memq-demo", persona=DEMO_PERSONA, human=DEMO_HUMAN)
        where = {"home": str(settings.home.resolve()),
                 "database": mask_url(settings.resolved_database_url)}
        if interactive:
            turns, ok = _interactive(client, agent, timeout, json_out)
        else:
            turns, ok = _scripted(client, agent, timeout, json_out)
        memory = [b.model_dump() for b in client.memory(agent.id)]
    if json_out:
        emit_json({"agent_id": agent.id, "turns": turns, "memory": memory, **where})
    elif ok:
        _epilogue(agent, memory, where)
    if not ok:
        raise typer.Exit(1)


def _interactive(client: Any, agent: Any, timeout: float, json_out: bool) -> tuple[list, bool]:
    from memq.cli.chat import chat_loop

    if not json_out:
        from memq.cli.output import console

        console().print(f"chatting with the demo agent {agent.id}", markup=False)
    return chat_loop(client, agent.id, timeout_s=timeout, json_out=json_out), True


def _scripted(client: Any, agent: Any, timeout: float, json_out: bool) -> tuple[list, bool]:
    """Send the scripted user lines one by one; stop at the first run that does not finish well."""
    from memq.cli.chat import turn_doc

    out = None
    if not json_out:
        from rich.text import Text

        from memq.cli.output import console

        out = console()
        out.print(Text.assemble(("memq demo", "bold"), f": agent {agent.id}, model ",
                                (client.settings.llm_model or "", "bold"), "\n"))
    turns: list[dict] = []
    for line in SCRIPT:
        if out is not None:
            out.print(Text.assemble(("you: ", "bold cyan"), line))
        started = time.monotonic()
        if out is not None:
            with out.status("thinking…"):
                run = client.send(agent.id, line, wait=True, timeout_s=timeout)
        else:
            run = client.send(agent.id, line, wait=True, timeout_s=timeout)
        turns.append(turn_doc(line, run))
        if out is not None:
            for reply in run.replies:
                out.print(Text.assemble(("agent: ", "bold green"), reply))
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


def _epilogue(agent: Any, memory: list[dict], where: dict) -> None:
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
    for cmd in (f"memq chat {agent.id}", f"memq messages {agent.id}",
                f"memq memory show {agent.id}"):
        out.print(Text("  " + cmd, style="cyan"))


def _db_path(url: str | None) -> str:
    """The file of an SQLite URL, else the (masked) URL itself."""
    url = url or ""
    return "SQLite file " + url.split(":///", 1)[1] if url.startswith("sqlite:///") else url
