"""Options shared by every command."""

from __future__ import annotations

from typing import Annotated

import typer

Json = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
AgentId = Annotated[str, typer.Argument(help="The agent's id.", show_default=False)]
