"""Settings and client for a command, built lazily (the imports cost hundreds of ms)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from memq.cli.output import CLIError, install_log_handler

if TYPE_CHECKING:
    from memq.client import Client
    from memq.settings import Settings


def load_settings(*, force_embedded: bool = False) -> "Settings":
    """``Settings()`` from the environment; a bad value is a one-line error.

    ``force_embedded`` drops the broker and any server database: one process,
    SQLite under MEMQ_HOME (what ``memq demo`` runs on).
    """
    from pydantic import ValidationError

    from memq.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "MEMQ_" + str(first["loc"][0]).upper() if first.get("loc") else "settings"
        raise CLIError(f"bad setting {name}: {first['msg']}") from None
    if force_embedded:
        settings = settings.model_copy(update={"broker_url": None, "database_url": None})
    return settings


def prepare_embedded(db: object, settings: "Settings") -> None:
    """Embedded SQLite needs no setup step: bring its schema up to date on open."""
    if settings.embedded and getattr(db, "is_sqlite", False):
        db.upgrade()  # type: ignore[attr-defined]


class QueueOnly:
    """A doorbell that rings nothing: embedded `memq send` without --wait only queues.

    The message waits in the database for an embedded `memq worker` or the next
    command that runs steps in-process (`send --wait`, `chat`).
    """

    def ring(self, agent_id: str, queue: str) -> None:
        return None


@contextmanager
def open_client(settings: "Settings | None" = None, *, run_steps: bool = True) -> Iterator["Client"]:
    """A connected client, closed on exit (embedded: in-flight steps finish first).

    ``run_steps=False`` in embedded mode gives a client that queues work without
    starting it in this process.
    """
    settings = settings or load_settings()
    install_log_handler()
    from memq.quick.pg import is_postgres

    if not settings.embedded and is_postgres(settings.resolved_database_url):
        # Server mode: reads and sends over psycopg alone; the full client is built
        # only for what the quick path hands over (memq/quick).
        from memq.quick.client import QuickClient

        with QuickClient(settings) as quick:
            yield quick  # type: ignore[misc]
        return
    from memq.client import Client

    if settings.embedded and not run_steps:
        from workers.runtime import Runtime

        client = Client(Runtime.build(settings), QueueOnly())
    else:
        client = Client.connect(settings)
    try:
        if settings.embedded and not run_steps:  # Client.connect upgrades before its threads start
            prepare_embedded(client.rt.db, settings)
        yield client
    finally:
        client.close()
