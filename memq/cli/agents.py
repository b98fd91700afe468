"""`memq agent create|list|show|delete` and `memq memory show`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from memq.cli.connect import open_client
from memq.cli.opts import AgentId, Json
from memq.cli.output import emit_json

app = typer.Typer(help="Create, list, show and delete agents.", no_args_is_help=True)
memory_app = typer.Typer(help="An agent's core memory.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name for the agent.", show_default=False)],
    persona: Annotated[Optional[str], typer.Option(help="Starting `persona` memory block.")] = None,
    human: Annotated[Optional[str], typer.Option(help="Starting `human` memory block.")] = None,
    model: Annotated[
        Optional[str], typer.Option(help="litellm model string; overrides MEMQ_LLM_MODEL.")
    ] = None,
    json_out: Json = False,
) -> None:
    """Create an agent; prints its id."""
    with open_client() as client:
        agent = client.create_agent(name, persona=persona, human=human, model=model)
    if json_out:
        emit_json(agent.model_dump())
        return
    from memq.cli import render

    render.agent_created(agent)


@app.command("list")
def list_(json_out: Json = False) -> None:
    """List every agent."""
    with open_client() as client:
        agents = client.list_agents()
    if json_out:
        emit_json({"agents": [a.model_dump() for a in agents]})
        return
    from memq.cli import render

    render.agent_table(agents)


@app.command("show")
def show(agent_id: AgentId, json_out: Json = False) -> None:
    """Show an agent and its core memory."""
    with open_client() as client:
        agent_id = client.resolve_agent(agent_id)
        agent = client.get_agent(agent_id)
        blocks = client.memory(agent_id)
    if json_out:
        emit_json({**agent.model_dump(), "memory": [b.model_dump() for b in blocks]})
        return
    from memq.cli import render

    render.agent_details(agent)
    render.blocks(blocks)


@app.command("delete")
def delete(agent_id: AgentId, json_out: Json = False) -> None:
    """Delete an agent and everything it remembers."""
    with open_client() as client:
        agent_id = client.resolve_agent(agent_id)
        client.delete_agent(agent_id)
    if json_out:
        emit_json({"deleted": agent_id})
        return
    from memq.cli.output import console

    console().print(f"deleted agent {agent_id}", markup=False)


@memory_app.command("show")
def memory_show(agent_id: AgentId, json_out: Json = False) -> None:
    """Show the agent's core-memory blocks."""
    with open_client() as client:
        agent_id = client.resolve_agent(agent_id)
        blocks = client.memory(agent_id)
    if json_out:
        emit_json({"blocks": [b.model_dump() for b in blocks]})
        return
    from memq.cli import render

    render.blocks(blocks)
