"""psycopg's own options on a Postgres URL, split off before libpq or SQLAlchemy sees the URL.

``?prepare_threshold=none`` turns off psycopg's server-side prepared statements
(by default a query is prepared on its 5th run on a connection). PgBouncer in
transaction mode before 1.21 hands each transaction a different server
connection, where that prepared statement does not exist, so behind it the
database URL needs this option: ``postgresql://memq@pgbouncer:6432/memq?prepare_threshold=none``.
A number sets the threshold instead.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DRIVER_OPTIONS = ("prepare_threshold",)


def split_driver_options(url: str) -> tuple[str, dict[str, Any]]:
    """(the URL without psycopg's options, those options as psycopg.connect keyword arguments)."""
    parts = urlsplit(url)
    if not parts.query or not any(k in DRIVER_OPTIONS for k, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return url, {}
    query = parse_qsl(parts.query, keep_blank_values=True)
    options: dict[str, Any] = {}
    for key, raw in query:
        if key == "prepare_threshold":
            value = raw.strip().lower()
            if value in ("", "none", "off"):
                options[key] = None
            elif value.isdigit():
                options[key] = int(value)
            else:
                raise ValueError(f"prepare_threshold in the database URL must be a number or none (got {raw!r})")
    rest = urlencode([(k, v) for k, v in query if k not in DRIVER_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), options
