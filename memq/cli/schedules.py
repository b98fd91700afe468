"""`memq schedule add|list|pause|resume|delete` and `memq beat`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from memq.cli.connect import load_settings, open_client
from memq.cli.opts import AGENT_REF_HELP, AgentId, Json, id_help
from memq.cli.output import emit_json

app = typer.Typer(help="Wake agents on a cron expression, an interval or once.", no_args_is_help=True)
ScheduleId = Annotated[str, typer.Argument(help=id_help("schedule"), show_default=False)]


def _show(views: list, json_out: bool, key: str = "schedules") -> None:
    if json_out:
        emit_json({key: [v.model_dump() for v in views]})
        return
    from rich.text import Text

    from memq.cli.output import console

    out = console()
    if not views:
        out.print(Text("no schedules", style="dim"))
    for v in views:  # one record per schedule: whole ids, so they can be pasted back
        when = f"{v.kind} {v.expr}" + (f" ({v.tz})" if v.kind == "cron" else "")
        out.print(Text.assemble("schedule ", (v.id, "cyan"), (" (paused)" if v.paused else "", "yellow")))
        for label, value in (("agent", v.agent_id), ("when", when), ("message", " ".join(v.message.split())[:200]),
                             ("next fire", v.next_fire_at or "-"),
                             *((("llm mode", v.llm_mode),) if v.llm_mode != "normal" else ()),
                             ("last fire", f"{v.last_fire_at or '-'} (run {v.last_run_status or '-'}; "
                                           f"{v.fires} fire{'' if v.fires == 1 else 's'})")):
            out.print(Text(f"  {label:<10} {value}"), soft_wrap=True)


@app.command("add")
def add(
    agent_id: AgentId,
    message: Annotated[str, typer.Option("--message", help="What the agent is told when it wakes.")],
    cron: Annotated[Optional[str], typer.Option(help="Cron expression, e.g. '0 8 * * mon-fri'.")] = None,
    every: Annotated[Optional[str], typer.Option(help="Interval, e.g. 30s, 5m, 1h30m, 1d.")] = None,
    at: Annotated[Optional[str], typer.Option(help="One-shot ISO 8601 time, e.g. 2026-12-01T09:00.")] = None,
    tz: Annotated[str, typer.Option(help="IANA time zone for --cron and a naive --at.")] = "UTC",
    missed: Annotated[
        Optional[str], typer.Option(help="After downtime: coalesce (one catch-up fire), skip or all.")
    ] = None,
    provider_batch: Annotated[bool, typer.Option(
        "--provider-batch", help="Each fire's steps go through the provider's batch API (half price, one "
        "provider round per step; needs `memq beat`).")] = False,
    json_out: Json = False,
) -> None:
    """Add a schedule to an agent."""
    with open_client(run_steps=False) as client:
        view = client.add_schedule(client.resolve_agent(agent_id), message, cron=cron, every=every, at=at, tz=tz,
                                   missed=missed, llm_mode="provider_batch" if provider_batch else "normal")
    if json_out:
        emit_json(view.model_dump())
    else:
        _show([view], False)


@app.command("list")
def list_(
    agent_id: Annotated[Optional[str], typer.Argument(help="Only this agent's schedules. " + AGENT_REF_HELP)] = None,
    json_out: Json = False,
) -> None:
    """List schedules with their last and next fire and the last run's status."""
    with open_client(run_steps=False) as client:
        views = client.list_schedules(None if agent_id is None else client.resolve_agent(agent_id))
    _show(views, json_out)


def _set(action: str, schedule_id: str, json_out: bool) -> None:
    with open_client(run_steps=False) as client:
        schedule_id = client.resolve("schedule", schedule_id)
        if action == "delete":
            client.delete_schedule(schedule_id)
            doc = {"deleted": schedule_id}
        else:
            view = getattr(client, f"{action}_schedule")(schedule_id)
            doc = view.model_dump()
    if json_out:
        emit_json(doc)
    else:
        from memq.cli.output import console

        done = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[action]
        console().print(f"{done} schedule {schedule_id}", markup=False)


@app.command("pause")
def pause(schedule_id: ScheduleId, json_out: Json = False) -> None:
    """Stop firing until resumed."""
    _set("pause", schedule_id, json_out)


@app.command("resume")
def resume(schedule_id: ScheduleId, json_out: Json = False) -> None:
    """Fire again, from the next instant after now."""
    _set("resume", schedule_id, json_out)


@app.command("delete")
def delete(schedule_id: ScheduleId, json_out: Json = False) -> None:
    """Delete a schedule."""
    _set("delete", schedule_id, json_out)


def beat(
    tick_s: Annotated[float, typer.Option("--tick", help="Longest wait between checks for new schedules.")] = 1.0,
) -> None:
    """Fire due schedules and run the reconciler (several beats may run at once)."""
    import logging
    import sys

    from memq.api.callbacks import payload_of
    from scheduler.beat import run_beat

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_beat(load_settings(), tick_s=tick_s, callback_payload=payload_of)  # it delivers run callbacks too
