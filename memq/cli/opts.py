"""Options shared by every command."""

from __future__ import annotations

from typing import Annotated

import typer

Json = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
AGENT_REF_HELP = "The agent: its id, a unique prefix of it (4+ characters) or its unique name."
AgentId = Annotated[str, typer.Argument(help=AGENT_REF_HELP, show_default=False)]


def id_help(kind: str) -> str:
    return f"The {kind}'s id or a unique prefix of it (4+ characters)."
