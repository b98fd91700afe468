"""Turning any exception into one line on stderr, an exit code and, with --json, an error document.

Every failure is named by what the user can fix (a setting, a server to start, an
id, a limit), never by an exception class. ``describe`` gives a ``Failure``; its
``kind`` is the stable slug of ``{"error": {"type", "message"}}``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from enum import Enum

from memq.cli.output import CLIError, emit_error_json, error_line


class ErrorType(str, Enum):
    NOT_FOUND = "not_found"
    BAD_INPUT = "bad_input"
    UNAVAILABLE = "unavailable"  # a database, broker or other server memq cannot reach
    USAGE = "usage"
    FAILED_RUN = "failed_run"
    TIMEOUT = "timeout"
    INTERNAL = "internal"  # a fault of memq itself: MEMQ_CLI_DEBUG=1 shows the traceback


@dataclass(frozen=True)
class Failure:
    kind: ErrorType
    message: str
    code: int = 1


_MISSING_SCHEMA = ("no such table", "undefinedtable", "relation \"")
_NO_DATABASE = re.compile(r'database "(?P<name>[^"]+)" does not exist')
_SERVER_AT = re.compile(r'server at "(?P<host>[^"]+)", port (?P<port>\d+)')
_SOCKET = re.compile(r'server on socket "(?P<path>[^"]+)"')
_UNRESOLVED = re.compile(r"failed to resolve host '(?P<host>[^']+)'")
_REFUSED = ("connection refused", "errno 111", "errno 61")
_BROKER_MODULES = ("kombu", "redis", "amqp", "celery", "librabbitmq")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _env_target(name: str) -> str:
    """host:port of the URL in an environment variable (for messages), else its name."""
    from urllib.parse import urlsplit

    url = os.environ.get(name) or ""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}" if parts.hostname and parts.port else (parts.hostname or name)
    except ValueError:
        return name


def _pg_target(text: str) -> str:
    for pattern in (_SERVER_AT, _SOCKET, _UNRESOLVED):
        m = pattern.search(text)
        if m:
            return ":".join(v for v in m.groups() if v)
    return _env_target("MEMQ_DATABASE_URL")


def database_failure(text: str) -> Failure:
    """A driver's message (psycopg or sqlite3) in terms of what to fix."""
    low = text.lower()
    target = _pg_target(text)
    unavailable = ErrorType.UNAVAILABLE
    m = _NO_DATABASE.search(text)
    if m:
        name = m.group("name")
        return Failure(unavailable, f"database {name} does not exist on {target} (create it with "
                                    f"`createdb {name}`, or run `memq db upgrade`, which creates it when allowed)")
    if _UNRESOLVED.search(text):
        return Failure(unavailable, f"cannot connect to Postgres at {target}: host name not found (check MEMQ_DATABASE_URL)")
    if any(s in low for s in _REFUSED):
        return Failure(unavailable, f"cannot connect to Postgres at {target} (connection refused): is it running? "
                                    "(check MEMQ_DATABASE_URL)")
    if "timeout expired" in low or "timed out" in low:
        return Failure(unavailable, f"cannot connect to Postgres at {target} (no answer in time)")
    if "password authentication failed" in low or "no password supplied" in low or "role \"" in low:
        return Failure(unavailable, f"Postgres at {target} refused the login: {text.split('FATAL:')[-1].strip()} "
                                    "(check the user and password in MEMQ_DATABASE_URL)")
    if "unable to open database file" in low:
        return Failure(unavailable, "cannot open the SQLite database file (check MEMQ_DATABASE_URL / MEMQ_HOME "
                                    "and that its directory is writable)")
    if "database is locked" in low:
        return Failure(unavailable, "the SQLite database is busy (another process holds its write lock); try again")
    if any(s in low for s in _MISSING_SCHEMA) or "does not exist" in low:
        return Failure(ErrorType.BAD_INPUT, f"the database has no memq schema yet: run `memq db upgrade` ({text})")
    return Failure(ErrorType.INTERNAL, f"database error: {text}")


def _broker_failure(exc: BaseException) -> Failure:
    from memq.service_errors import broker_down

    return Failure(ErrorType.UNAVAILABLE, broker_down(os.environ.get("MEMQ_BROKER_URL"), exc)
                   + ": is it running? (check MEMQ_BROKER_URL)")


def _os_failure(exc: OSError) -> Failure:
    what = (exc.strerror or _first_line(exc) or "operating system error").lower()
    where = f": {exc.filename}" if exc.filename else ""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Failure(ErrorType.UNAVAILABLE, f"cannot connect: {what}{where}")
    return Failure(ErrorType.BAD_INPUT, f"{what}{where}")


def describe(exc: BaseException) -> Failure:
    """The failure of a command: kind, one-line message, exit code."""
    if isinstance(exc, CLIError):
        kind = ErrorType(exc.kind) if exc.kind else (ErrorType.USAGE if exc.code == 2 else ErrorType.BAD_INPUT)
        return Failure(kind, str(exc), exc.code)
    for name in ("typer._click.exceptions", "click.exceptions"):  # typer vendors click
        click_exc = sys.modules.get(name)
        if click_exc is not None and isinstance(exc, click_exc.ClickException):
            return Failure(ErrorType.USAGE, exc.format_message() or "usage error", exc.exit_code)
        if click_exc is not None and isinstance(exc, getattr(click_exc, "Abort", ())):
            return Failure(ErrorType.USAGE, "aborted", 1)
    # Looked up, not imported: if one of these was raised, its module is loaded.
    repo_errors = sys.modules.get("storage.repository.errors")
    if repo_errors is not None and isinstance(exc, repo_errors.NotFound):
        return Failure(ErrorType.NOT_FOUND, str(exc.args[0] if exc.args else _first_line(exc)))
    if repo_errors is not None and isinstance(exc, repo_errors.BadInput):
        return Failure(ErrorType.BAD_INPUT, str(exc.args[0] if exc.args else _first_line(exc)))
    sa_exc = sys.modules.get("sqlalchemy.exc")
    driver_exc = exc.orig if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError) else exc
    deadline = sys.modules.get("storage.deadline")
    if deadline is not None and isinstance(driver_exc, deadline.DatabaseUnavailable):
        # A server that does not answer in time is unreachable, not a slow run (it is a TimeoutError too).
        return Failure(ErrorType.UNAVAILABLE, _first_line(driver_exc))
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        return database_failure(_first_line(exc.orig) if exc.orig is not None else _first_line(exc))
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):  # the CLI's quick path
        return database_failure(_first_line(exc))
    if type(exc).__module__.split(".")[0] in _BROKER_MODULES:
        return _broker_failure(exc)
    if isinstance(exc, TimeoutError):
        return Failure(ErrorType.TIMEOUT, _first_line(exc) or "timed out")
    if isinstance(exc, OSError):
        return _os_failure(exc)
    if isinstance(exc, ModuleNotFoundError):
        return Failure(ErrorType.INTERNAL, f"a module memq needs is not installed: {exc.name} "
                                           "(reinstall memq: pip install -e .)")
    text = _first_line(exc) or "no details"
    return Failure(ErrorType.INTERNAL, f"unexpected error: {text} (MEMQ_CLI_DEBUG=1 shows the traceback)")


def handle(exc: BaseException, *, json_out: bool = False) -> int:
    """Print the error line (and the --json error document); return the exit code.

    MEMQ_CLI_DEBUG=1 re-raises whatever is not an expected user error.
    """
    if os.environ.get("MEMQ_CLI_DEBUG") and not isinstance(exc, CLIError):
        raise exc
    try:
        failure = describe(exc)
    except Exception:  # noqa: BLE001 - describing must never be the thing that crashes
        failure = Failure(ErrorType.INTERNAL, f"unexpected error: {_first_line(exc) or 'no details'}")
    if failure.kind is ErrorType.USAGE and not json_out and hasattr(exc, "show"):
        exc.show()  # click's own usage text: "Usage: ... Try 'memq X -h' for help."
    else:
        error_line(failure.message)
    if json_out:
        emit_error_json(failure.kind.value, failure.message)
    return failure.code
