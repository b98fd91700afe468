"""Length limits of bounded text columns, checked before the database sees a value.

Postgres refuses a string longer than its ``varchar(N)`` ("value too long for type
character varying(200)"); SQLite stores it. Both get the same check here, with an
error that names the field and its limit. ``install`` hooks it into a session
factory (every ORM flush); ``check_value`` serves validation that runs earlier
(batch lines, CLI options).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import String, event, inspect

from storage.repository.errors import BadInput

# What the user calls a column; the rest read "<table> <column>".
FIELD_NAMES = {
    ("agents", "name"): "agent name",
    ("agents", "model"): "model",
    ("runs", "idempotency_key"): "idempotency key",
    ("schedules", "expr"): "schedule expression",
    ("schedules", "tz"): "time zone",
    ("memory_blocks", "label"): "memory block label",
    ("batches", "source"): "batch source (file name)",
    ("batch_items", "item_id"): "batch item id",
}


class ValueTooLong(BadInput):
    def __init__(self, field: str, length: int, limit: int) -> None:
        super().__init__(f"{field} is {length} characters long; the limit is {limit}")
        self.field, self.length, self.limit = field, length, limit


@lru_cache(maxsize=None)
def _bounded(mapper: Any) -> tuple[tuple[str, int, str], ...]:
    """(attribute, limit, field name) of every length-limited string column of a mapped class."""
    found = []
    for attr in mapper.column_attrs:
        column = attr.columns[0]
        length = getattr(column.type, "length", None)
        if isinstance(column.type, String) and length:
            table = column.table.name
            found.append((attr.key, length, FIELD_NAMES.get((table, column.name), f"{table} {column.name}")))
    return tuple(found)


def limit_of(table: str, column: str) -> int:
    """The declared limit of a bounded column (for validation that runs before any row exists)."""
    from storage.models import Base

    return Base.metadata.tables[table].columns[column].type.length


def check_value(field: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise ValueTooLong(field, len(value), limit)


def check_instance(obj: Any) -> None:
    for key, limit, field in _bounded(inspect(obj).mapper):
        value = getattr(obj, key, None)
        if isinstance(value, str):
            check_value(field, value, limit)


def _before_flush(session: Any, _flush_context: Any, _instances: Any) -> None:
    for obj in (*session.new, *session.dirty):
        check_instance(obj)


def install(session_factory: Any) -> None:
    """Check every new or changed row of sessions from this factory before it is flushed."""
    event.listen(session_factory, "before_flush", _before_flush)
