"""`memq flower` and `memq status`; `register` also sets up logging for every command."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Any, Optional

import typer

from memq.cli.connect import load_settings
from memq.cli.opts import Json
from memq.cli.output import CLIError, emit_json, error_line

NO_CREDENTIALS = (
    "memq flower needs MEMQ_FLOWER_USER and MEMQ_FLOWER_PASSWORD for basic auth "
    "(or --insecure to serve it without authentication)"
)


def flower(
    port: Annotated[int, typer.Option(help="Port to serve Flower on.")] = 5555,
    address: Annotated[str, typer.Option(help="Address to bind.")] = "0.0.0.0",
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Serve without authentication (a trusted network only).")
    ] = False,
    url_prefix: Annotated[Optional[str], typer.Option(help="Serve under this path (behind a proxy).")] = None,
    json_out: Json = False,
) -> None:
    """Run Flower, Celery's web monitor, on memq's broker (basic auth from MEMQ_FLOWER_*)."""
    settings = load_settings()
    if not 0 < port < 65536:
        raise CLIError(f"--port must be a port number (got {port})")
    if settings.embedded:
        raise CLIError("memq flower needs MEMQ_BROKER_URL: embedded mode has no Celery workers to watch")
    user, password = settings.flower_user, settings.flower_password
    if not insecure and not (user and password):
        raise CLIError(NO_CREDENTIALS)
    if user and ":" in user:
        raise CLIError("MEMQ_FLOWER_USER must not contain ':'")
    import logging

    from memq import logging_setup

    logging_setup.configure(json_logs=settings.log_json)
    bound = _serve_flower(settings, port, address, None if insecure else f"{user}:{password}", url_prefix,
                          logging.getLogger("memq.flower"))
    if json_out:
        emit_json({"stopped": True, "port": bound})


def _serve_flower(settings: Any, port: int, address: str, credentials: str | None, url_prefix: str | None,
                  log: Any) -> int | None:
    """Flower in this process, on memq's Celery app (as `celery flower` would build it)."""
    from flower import command as flower_command
    from flower.app import Flower
    from flower.urls import settings as flower_settings
    from tornado.options import options

    from workers.celery_app import create_celery_app

    capp = create_celery_app(settings)
    # Other FLOWER_* variables (persistent, max_tasks, ...) still apply, as with `celery flower`.
    flower_command.apply_env_options()
    options.port = port
    options.address = address
    if url_prefix:
        options.url_prefix = url_prefix
    if credentials is not None:
        # Set here, not through FLOWER_BASIC_AUTH or argv: a password may hold a comma,
        # and argv is visible to every user of the host.
        options.basic_auth = [credentials]
    else:
        options.basic_auth = []
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"
        log.warning("flower runs WITHOUT authentication (--insecure)")
    flower_command.extract_settings()
    flower_command.setup_logging()
    app = Flower(capp=capp, options=options, **flower_settings)

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: flower stopping", signum)
        app.io_loop.add_callback_from_signal(app.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound = app.start_http_server()
    log.info("flower on http://%s:%s/%s (broker %s, auth %s)", address or "0.0.0.0", bound,
             (url_prefix or "").strip("/"), settings.broker_url, "basic" if credentials else "NONE")
    if not settings.log_json:  # JSON logs: every line stays one JSON object
        print(f"memq flower ready on port {bound}", file=sys.stderr, flush=True)
    try:
        app.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        app.stop()
    return bound


def status(json_out: Json = False) -> None:
    """Check the database, broker, Qdrant, LLM, queues and workers; exit 1 when one is down."""
    settings = load_settings()
    from memq.health import status as collect

    doc = collect(settings)
    if json_out:
        emit_json(doc)
    else:
        _render(doc)
    if not doc["ok"]:
        error_line("down: " + ", ".join(f"{name} ({doc['checks'][name].get('detail', '')})" for name in doc["down"]))
        raise typer.Exit(1)


_STYLE = {"up": "green", "down": "bold red", "warn": "yellow"}


def _render(doc: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from memq.cli.output import console

    table = Table(title=f"memq status ({doc['mode']})", title_justify="left")
    table.add_column("component")
    table.add_column("status")
    table.add_column("target")
    table.add_column("detail")
    for name, check in doc["checks"].items():
        latency = f" ({check['latency_ms']:.0f} ms)" if check.get("latency_ms") is not None else ""
        detail = check.get("detail") or ""
        if name == "workers" and check.get("names"):
            detail = ", ".join(check["names"])
        table.add_row(name, Text(check["status"], style=_STYLE.get(check["status"], "dim")),
                      check.get("target") or "", detail + latency)
    out = console()
    out.print(table)
    if doc["queues"] is not None:
        out.print("queues: " + ", ".join(f"{q} {n}" for q, n in doc["queues"].items()), markup=False)
    pending = doc["pending"]
    if pending is not None:
        line = f"pending: {pending['messages']} message(s) for {pending['agents']} agent(s)"
        if pending["longest_wait_s"] is not None:
            line += f", longest wait {pending['longest_wait_s']:.1f} s"
        if pending["agents_mid_turn"]:
            line += f"; {pending['agents_mid_turn']} agent(s) mid-turn"
        out.print(line, markup=False)
        if pending.get("agents_failing"):
            out.print(Text(f"failing: {pending['agents_failing']} agent(s) whose last step raised "
                           "(memq agent show ID)", style="bold red"))
            for f in pending["failing"]:
                out.print(f"  {f['agent_id']}  {f['attempts']} attempt(s): {f['last_error']}", markup=False)


def version(json_out: Json = False) -> None:
    """Print memq's version."""
    from memq import __version__

    if json_out:
        emit_json({"version": __version__, "python": sys.version.split()[0]})
        return
    print(f"memq {__version__}")


def _print_version(value: bool) -> None:
    if value:
        version()
        raise typer.Exit()


def _configure_logging(
    ctx: typer.Context,
    _version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                           help="Print memq's version and exit.")] = False,
) -> None:
    from memq import logging_setup

    logging_setup.configure_for_command(ctx.invoked_subcommand)


def register(app: typer.Typer) -> None:
    app.command("flower")(flower)
    app.command("status")(status)
    # Every command logs through memq.logging_setup (JSON with MEMQ_LOG_JSON=1,
    # secrets masked); services re-configure at their own level when they start.
    if app.registered_callback is None:
        app.callback()(_configure_logging)
    app.command("version")(version)
