"""`memq batch submit|status|results|cancel`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from memq.cli.connect import open_client
from memq.cli.opts import Json, id_help
from memq.cli.output import CLIError, emit_json

app = typer.Typer(help="Process JSONL files of messages on the batch queue.", no_args_is_help=True)
BatchId = Annotated[str, typer.Argument(help=id_help("batch"), show_default=False)]


def _follow(client, batch_id: str, json_out: bool, timeout_s: float | None):
    """Wait for the batch; a rich progress bar with rate and ETA unless --json."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    status = client.batch_status(batch_id)
    runs = status.total - status.invalid
    if json_out:
        while not status.finished and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.25)
            status = client.batch_status(batch_id)
        return status
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}/s"),
               TimeRemainingColumn()]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("batch", total=runs, rate="0.0")
        while True:
            done = sum(n for st, n in status.counts.items() if st not in ("queued", "running"))
            speed = progress.tasks[0].speed or 0.0
            progress.update(task, completed=done, rate=f"{speed:.1f}")
            if status.finished or (deadline is not None and time.monotonic() >= deadline):
                return status
            time.sleep(0.25)
            status = client.batch_status(batch_id)


@app.command("submit")
def submit(
    file: Annotated[Path, typer.Argument(help="JSONL: {agent_id, message, id?} per line (or {agent: {...}, message}).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until every run has finished.")] = False,
    create_agents: Annotated[bool, typer.Option("--create-agents", help="Lines give 'agent' specs to create.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Enqueue the valid lines, report the rest.")] = False,
    provider_batch: Annotated[bool, typer.Option(
        "--provider-batch", help="Every step's LLM call goes through the provider's batch API "
        "(half price on OpenAI; one provider round, up to 24 h, per step; needs `memq beat`).")] = False,
    json_out: Json = False,
) -> None:
    """Validate every line, then enqueue the batch (nothing is enqueued if a line is bad)."""
    if not file.is_file():
        raise CLIError(f"no such file: {file}")
    # Bytes that are not UTF-8 become U+FFFD in the line that holds them, with a warning (memq.text).
    lines = file.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    with open_client() as client:
        doc = client.submit_batch(lines, create_agents=create_agents, skip_invalid=skip_invalid, source=str(file),
                                  llm_mode="provider_batch" if provider_batch else "normal")
        if wait:
            doc["status"] = _follow(client, doc["batch_id"], json_out, None).model_dump()
    if json_out:
        emit_json(doc)
    else:
        from memq.cli.output import console

        console().print(f"batch {doc['batch_id']}: {doc['enqueued']} enqueued, {doc['invalid']} invalid", markup=False)


@app.command("status")
def status(
    batch_id: BatchId,
    wait: Annotated[bool, typer.Option("--wait", help="Follow with a progress bar until it finishes.")] = False,
    json_out: Json = False,
) -> None:
    """Counts by status, tokens and cost."""
    with open_client(run_steps=False) as client:
        batch_id = client.resolve("batch", batch_id)
        view = _follow(client, batch_id, json_out, None) if wait else client.batch_status(batch_id)
    if json_out:
        emit_json(view.model_dump())
        return
    from memq.cli.output import console

    counts = ", ".join(f"{k} {v}" for k, v in sorted(view.counts.items())) or "nothing yet"
    console().print(f"batch {batch_id}: {counts}; invalid {view.invalid}; tokens {view.prompt_tokens}+"
                    f"{view.completion_tokens}; cost ${view.cost_usd:.4f}"
                    + ("; cancelled" if view.cancelled else "") + ("; finished" if view.finished else ""),
                    markup=False)
    if view.provider_steps:  # llm_mode=provider_batch
        steps = ", ".join(f"{k} {v}" for k, v in sorted(view.provider_steps.items()))
        normal = "" if view.normal_cost_usd is None else f"; normal route ${view.normal_cost_usd:.4f}"
        console().print(f"provider batch steps: {steps}{normal}; provider batches: "
                        + (", ".join(view.provider_batch_ids) or "none yet"), markup=False)


@app.command("results")
def results(
    batch_id: BatchId,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the JSONL here instead of stdout.")] = None,
    json_out: Json = False,
) -> None:
    """JSONL, one row per input line: line, id, agent_id, message, run_id, status, replies, error."""
    import json

    with open_client(run_steps=False) as client:
        batch_id = client.resolve("batch", batch_id)
        rows = client.batch_results(batch_id)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        if json_out:
            emit_json({"batch_id": batch_id, "rows": len(rows), "out": str(out)})
        return
    sys.stdout.write(text)


@app.command("cancel")
def cancel(batch_id: BatchId, json_out: Json = False) -> None:
    """Cancel every run of the batch that has not started."""
    with open_client(run_steps=False) as client:
        batch_id = client.resolve("batch", batch_id)
        doc = client.cancel_batch(batch_id)
    if json_out:
        emit_json(doc)
    else:
        from memq.cli.output import console

        extra = doc.get("cancelled_provider_batches")
        console().print(f"cancelled {doc['cancelled_runs']} run(s) of batch {batch_id}"
                        + (f" and {extra} provider batch(es)" if extra else ""), markup=False)
