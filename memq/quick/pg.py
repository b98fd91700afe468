"""One psycopg connection for the quick path, and rows that read like ORM objects."""

from __future__ import annotations

from typing import Any

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def is_postgres(url: str | None) -> bool:
    return bool(url) and url.startswith(POSTGRES_SCHEMES)  # type: ignore[union-attr]


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://...`` (SQLAlchemy's spelling) -> ``postgresql://...`` (libpq's)."""
    return "postgresql://" + url.split("://", 1)[1]


class Row:
    """A result row whose columns are attributes (what the views read from ORM objects)."""

    __slots__ = ("__dict__",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def row_factory(cursor: Any) -> Any:
    """psycopg's row_factory (sync or async cursors): rows as Row."""
    names = [c.name for c in cursor.description or ()]

    def make(values: Any) -> Row:
        return Row(dict(zip(names, values)))

    return make


def connect(url: str, deadline_s: float) -> Any:
    """An autocommit connection; ``with conn.transaction():`` groups statements. Connecting and
    every round trip give up after ``deadline_s`` (MEMQ_DB_DEADLINE_S) with DatabaseUnavailable,
    as the full client's do (storage/deadline.py)."""
    from storage.deadline import connect as connect_with_deadline
    from storage.pgurl import split_driver_options

    url, options = split_driver_options(url)  # e.g. ?prepare_threshold=none behind PgBouncer
    return connect_with_deadline(deadline_s, libpq_url(url), autocommit=True, row_factory=row_factory, **options)
