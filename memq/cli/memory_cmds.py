"""`memq archival insert|search`, `memq recall search`, `memq ingest`, `memq reindex`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from memq.cli.connect import open_client
from memq.cli.opts import AgentId, Json
from memq.cli.output import CLIError, emit_json

archival_app = typer.Typer(help="The agent's archival memory: passages it stored and ingested documents.",
                           no_args_is_help=True)
recall_app = typer.Typer(help="The agent's recall memory: every message, evicted ones too.", no_args_is_help=True)

Query = Annotated[str, typer.Argument(help="What to look for (by meaning when an embedding model is set).",
                                      show_default=False)]
Page = Annotated[int, typer.Option("--page", min=0, help="Which page of results, from 0 (5 per page).")]

_TEXT_CELL = 300  # characters of a result shown in the table (--json has all of it)


def _cell(text: str | None, limit: int = _TEXT_CELL) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _show_page(doc: dict[str, Any], what: str, columns: list[str]) -> None:
    from rich.table import Table
    from rich.text import Text

    from memq.cli.output import console
    from storage.memory import page_line

    out = console()
    for line in doc.get("notes") or []:
        out.print(Text(line, style="dim"))
    if doc["results"]:
        table = Table("#", *columns, "text", show_lines=False)
        first = doc["page"] * 5
        for n, item in enumerate(doc["results"], start=first + 1):
            cells = []
            for col in columns:
                value = item.get(col)
                if col == "time" and value:
                    value = str(value)[:19].replace("T", " ")
                cells.append("-" if value is None else str(value))
            text = item.get("text") or ""
            if item.get("source") == "document" and "\n" in text:  # its header (file, page, lines) on a line
                head, body = text.split("\n", 1)
                text_cell = Text(_cell(head, 120), style="bold") + Text("\n" + _cell(body))
            else:
                text_cell = Text(_cell(text))
            table.add_row(str(n), *cells, text_cell)
        out.print(table)
    out.print(page_line(doc["page"], doc["pages"], doc["total"], what, "--page {}"), markup=False, soft_wrap=True)


# -- archival -----------------------------------------------------------------


@archival_app.command("insert")
def archival_insert(
    agent_id: AgentId,
    text: Annotated[str, typer.Argument(help="The passage to store.", show_default=False)],
    json_out: Json = False,
) -> None:
    """Store a passage in the agent's archival memory."""
    with open_client(run_steps=False) as client:
        doc = client.archival_insert(client.resolve_agent(agent_id), text)
    if json_out:
        emit_json(doc)
        return
    from memq.cli.output import console

    state = "indexed" if doc["indexed"] else "stored (indexed later, searchable by words meanwhile)"
    console().print(f"passage {doc['passage_id']}: {state}", markup=False)


@archival_app.command("search")
def archival_search(agent_id: AgentId, query: Query, page: Page = 0, json_out: Json = False) -> None:
    """Search the agent's archival memory (best match first)."""
    with open_client(run_steps=False) as client:
        doc = client.archival_search(client.resolve_agent(agent_id), query, page)
    if json_out:
        emit_json(doc)
    else:
        _show_page(doc, "passages", ["score", "time", "source"])


# -- recall -------------------------------------------------------------------


def parse_when(value: str | None, option: str, *, end: bool) -> datetime | None:
    """``YYYY-MM-DD`` (a whole day: an end date includes it) or an ISO 8601 time (UTC if naive)."""
    from datetime import timedelta, timezone

    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10 and text[4] == "-" and text[7] == "-":
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, IndexError):
        raise CLIError(f"{option} must be a date like 2026-11-25 or an ISO 8601 time, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@recall_app.command("search")
def recall_search(
    agent_id: AgentId,
    query: Query,
    page: Page = 0,
    start: Annotated[Optional[str], typer.Option("--start", help="From this date (YYYY-MM-DD) or ISO time.")] = None,
    end: Annotated[Optional[str], typer.Option("--end", help="Up to this date (inclusive) or ISO time.")] = None,
    json_out: Json = False,
) -> None:
    """Search everything the agent and its users said (evicted messages too)."""
    start_at, end_at = parse_when(start, "--start", end=False), parse_when(end, "--end", end=True)
    if start_at and end_at and start_at >= end_at:
        raise CLIError("--start must be before --end")
    with open_client(run_steps=False) as client:
        doc = client.recall_search(client.resolve_agent(agent_id), query, page, start_at, end_at)
    if json_out:
        emit_json(doc)
    else:
        _show_page(doc, "messages", ["time", "role"])


# -- ingest -------------------------------------------------------------------


def ingest(
    agent_id: AgentId,
    paths: Annotated[list[Path], typer.Argument(help="Files: PDF, Markdown, text or source code.",
                                                show_default=False)],
    json_out: Json = False,
) -> None:
    """Store documents in the agent's archival memory (exit 1 if any file failed; the others are kept)."""
    from memq.cli.output import console, error_line

    names = [str(p) for p in paths]
    with open_client(run_steps=False) as client:
        agent_id = client.resolve_agent(agent_id)
        if json_out:
            doc = client.ingest(agent_id, names)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = [TextColumn("ingest {task.fields[file]}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("chunks"), TimeRemainingColumn()]
            bar = Progress(*columns, console=console(), transient=False)
            task = bar.add_task("ingest", total=None, file="")

            def progress(done: int, total: int, path: str) -> None:
                if not bar.live.is_started:  # started by the first chunk: an unknown agent shows no bar
                    bar.start()
                bar.update(task, completed=done, total=total or None, file=_cell(path, 40))

            try:
                doc = client.ingest(agent_id, names, progress)
            finally:
                if bar.live.is_started:
                    bar.update(task, file="")
                    bar.stop()
    if json_out:
        emit_json(doc)
    else:
        _show_ingest(doc)
    for entry in doc["documents"]:
        if entry["error"]:
            error_line(entry["error"])
    if doc["failed"]:
        raise typer.Exit(1)


def _show_ingest(doc: dict[str, Any]) -> None:
    from rich.table import Table

    from memq.cli.output import console

    table = Table("file", "kind", "chunks", "indexed", "document")
    for e in doc["documents"]:
        if e["error"]:
            table.add_row(e["path"], e["kind"] or "-", "-", "-", "failed")
            continue
        indexed = "yes" if e["indexed"] else ("later" if (e["note"] or "").startswith("indexed later") else "no")
        table.add_row(e["path"], e["kind"], str(e["chunks"]), indexed, e["document_id"])
    console().print(table)
    console().print(f"{doc['ok']} stored, {doc['failed']} failed", markup=False)


# -- reindex ------------------------------------------------------------------


def reindex(
    agent_id: Annotated[Optional[str], typer.Argument(help="Only this agent (default: all).")] = None,
    json_out: Json = False,
) -> None:
    """Rebuild the vector index (recall and archival) from the database."""
    with open_client(run_steps=False) as client:
        agent_id = client.resolve_agent(agent_id) if agent_id is not None else None
        doc = client.reindex(agent_id)
    if json_out:
        emit_json(doc)
        return
    from memq.cli.output import console

    counts = doc["reindexed"]
    who = f"agent {agent_id}" if agent_id else "all agents"
    console().print(f"reindexed {who}: {counts.get('messages', 0)} messages, {counts.get('passages', 0)} passages",
                    markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(archival_app, name="archival")
    app.add_typer(recall_app, name="recall")
    app.command("ingest")(ingest)
    app.command("reindex")(reindex)
