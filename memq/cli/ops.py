"""`memq db upgrade`, `memq worker` (and registers `memq demo`)."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from memq.cli.connect import load_settings
from memq.cli.opts import Json
from memq.cli.output import CLIError, emit_json, mask_url

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)

POOLS = ("threads", "prefork", "gevent", "solo")
LOGLEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@db_app.command("upgrade")
def db_upgrade(json_out: Json = False) -> None:
    """Apply every database migration."""
    settings = load_settings()
    url = settings.resolved_database_url
    from storage.db import Database

    created = _create_if_missing(url)
    db = Database(url)
    try:
        db.upgrade()
    finally:
        db.dispose()
    if json_out:
        emit_json({"ok": True, "database": mask_url(url), "created": created})
        return
    from memq.cli.output import console

    if created:
        console().print(f"created database {mask_url(url)}", markup=False)
    console().print(f"database is up to date: {mask_url(url)}", markup=False)


def _create_if_missing(url: str) -> bool:
    """A Postgres database that does not exist yet is created when the server allows it."""
    if not url.startswith(("postgresql", "postgres:")):
        return False
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from memq.cli.errors import database_failure
    from storage.db import check_database_url, create_missing_database

    check_database_url(url)
    try:
        return create_missing_database(url)
    except DBAPIError as exc:
        name = make_url(url).database
        reason = database_failure(str(exc.orig or exc).strip().splitlines()[0])
        if "permission denied" in str(exc.orig or exc).lower():
            raise CLIError(f"database {name} does not exist and this user may not create it "
                           f"(create it with `createdb {name}`, then run `memq db upgrade` again)",
                           kind="unavailable") from None
        raise CLIError(reason.message, kind=reason.kind.value) from None


def _parse_queues(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    from memq.constants import ALL_QUEUES

    queues = [q.strip() for q in raw.split(",") if q.strip()]
    unknown = [q for q in queues if q not in ALL_QUEUES]
    if not queues or unknown:
        bad = ", ".join(unknown) or "(none)"
        raise CLIError(f"unknown queue {bad}; choose from {','.join(ALL_QUEUES)}")
    return queues


def worker(
    concurrency: Annotated[
        Optional[int], typer.Option(help="Steps in flight (default MEMQ_WORKER_CONCURRENCY).")
    ] = None,
    queues: Annotated[
        Optional[str], typer.Option(help="Comma-separated queues (default: all).")
    ] = None,
    pool: Annotated[str, typer.Option(help="threads|prefork|gevent|solo")] = "threads",
    loglevel: Annotated[
        Optional[str], typer.Option(help="DEBUG|INFO|WARNING|ERROR|CRITICAL (default MEMQ_LOG_LEVEL).")
    ] = None,
    hostname: Annotated[Optional[str], typer.Option(help="Celery node name.")] = None,
    metrics_port: Annotated[
        Optional[int], typer.Option(help="Serve Prometheus metrics on this port (default MEMQ_METRICS_PORT).")
    ] = None,
    processes: Annotated[
        Optional[int], typer.Option(help="Worker processes under one supervising parent "
                                    "(default: one per core; 1: no supervisor; embedded mode: always 1).")
    ] = None,
    json_out: Json = False,
) -> None:
    """Run a worker: Celery when MEMQ_BROKER_URL is set, else the embedded poller."""
    if concurrency is not None and concurrency < 1:
        raise CLIError(f"--concurrency must be at least 1 (got {concurrency})")
    if processes is not None and processes < 1:
        raise CLIError(f"--processes must be at least 1 (got {processes})")
    if pool not in POOLS:
        raise CLIError(f"unknown pool {pool!r}; choose from {'|'.join(POOLS)}")
    if metrics_port is not None and not 0 < metrics_port < 65536:
        raise CLIError(f"--metrics-port must be a port number (got {metrics_port})")
    parsed = _parse_queues(queues)
    settings = load_settings()
    if metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": metrics_port})
    level = (loglevel or settings.log_level).upper()
    if level not in LOGLEVELS:
        raise CLIError(f"unknown log level {loglevel or settings.log_level!r}; choose from {'|'.join(LOGLEVELS)}")
    from workers.main import run_worker

    kwargs: dict = {"concurrency": concurrency, "pool": pool, "loglevel": level}
    if parsed is not None:
        kwargs["queues"] = parsed
    if hostname:
        kwargs["hostname"] = hostname
    if settings.embedded:
        import logging

        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if processes is not None and processes > 1:
            print("memq worker: embedded mode (no MEMQ_BROKER_URL) runs one process; --processes ignored",
                  file=sys.stderr)
    else:
        from workers.supervisor import default_processes

        processes = processes or default_processes()
    if not settings.embedded and processes > 1:
        _supervise(settings, processes, kwargs, json_out)
        return
    if not json_out:
        run_worker(settings, **kwargs)
        return
    from contextlib import redirect_stdout

    try:
        with redirect_stdout(sys.stderr):  # stdout is kept for the one JSON document
            run_worker(settings, **kwargs)
    finally:
        emit_json({"stopped": True, "embedded": settings.embedded})


def _supervise(settings: Any, processes: int, kwargs: dict, json_out: bool) -> None:
    """N worker processes under one parent (workers/supervisor.py); exits with its code."""
    from memq.constants import ALL_QUEUES
    from workers.supervisor import run_supervised

    code = run_supervised(settings, processes, json_out=json_out, **{"queues": ALL_QUEUES, **kwargs})
    if json_out:
        emit_json({"stopped": True, "embedded": False, "processes": processes, "exit_code": code})
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    from memq.cli import demo

    app.command("worker")(worker)
    app.command("demo")(demo.demo)
