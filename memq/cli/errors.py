"""Turning any exception into one line on stderr and an exit code."""

from __future__ import annotations

import os
import sys

from memq.cli.output import CLIError, error_line

_MISSING_SCHEMA = ("no such table", "does not exist", "undefinedtable")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(exc: BaseException) -> tuple[str, int]:
    """(message, exit code) for an exception raised by a command."""
    if isinstance(exc, CLIError):
        return str(exc), exc.code
    # Looked up, not imported: if one of these was raised, its module is loaded.
    repo_errors = sys.modules.get("storage.repository.errors")
    if repo_errors is not None and isinstance(exc, (repo_errors.NotFound, repo_errors.BadInput)):
        msg = exc.args[0] if exc.args else _first_line(exc)
        return str(msg), 1
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        orig = _first_line(exc.orig) if exc.orig is not None else _first_line(exc)
        if any(s in orig.lower() for s in _MISSING_SCHEMA):
            return f"the database has no memq schema yet: run `memq db upgrade` ({orig})", 1
        return f"database error: {orig}", 1
    return f"{type(exc).__name__}: {_first_line(exc)}", 1


def handle(exc: BaseException) -> int:
    """Print the error line and return the exit code; MEMQ_CLI_DEBUG=1 re-raises."""
    if os.environ.get("MEMQ_CLI_DEBUG") and not isinstance(exc, CLIError):
        raise exc
    message, code = describe(exc)
    error_line(message)
    return code
