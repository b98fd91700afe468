"""Timestamps as memq shows them; no database imports, so the CLI's read path can use it."""

from __future__ import annotations

from datetime import datetime, timezone


def iso_utc(dt: datetime) -> str:
    """ISO 8601 in UTC; SQLite hands back naive datetimes that were stored as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
