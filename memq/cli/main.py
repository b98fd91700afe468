"""`memq`: the typer app and its entry point.

Nothing heavy is imported here (no litellm, celery or SQLAlchemy models): each
command imports what it needs when it runs, so ``memq --help`` answers at once.
"""

from __future__ import annotations

import sys

import typer

from memq.cli import agents, batches, keys, memory_cmds, operate, ops, schedules, serve, talk

app = typer.Typer(
    name="memq",
    help="Stateful MemGPT-style LLM agents on Celery. Every command takes --json.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.add_typer(agents.app, name="agent")
talk.register(app)
app.add_typer(agents.memory_app, name="memory")
app.add_typer(ops.db_app, name="db")
app.add_typer(schedules.app, name="schedule")
app.add_typer(batches.app, name="batch")
app.add_typer(keys.app, name="key")
serve.register(app)
app.command("beat")(schedules.beat)
ops.register(app)
operate.register(app)
memory_cmds.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: usage errors exit 2, everything else is one line on stderr
    (and, with --json, ``{"error": {"type", "message"}}`` on stdout)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        # Not standalone: usage errors come here too, so --json gets its error document.
        code = app(args=args, prog_name="memq", standalone_mode=False)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _interrupted()
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        import click

        if isinstance(exc, click.exceptions.Abort):  # click's form of Ctrl-C outside standalone mode
            _interrupted()
        from memq.cli.errors import handle

        sys.exit(handle(exc, json_out="--json" in args))
    sys.exit(code if isinstance(code, int) else 0)


def _interrupted() -> None:
    sys.stderr.write("\ninterrupted\n")
    sys.exit(130)


if __name__ == "__main__":
    main()
