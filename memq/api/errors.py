"""Every failure answers with a JSON body `{"detail": ..., "error": ...}`; never a
traceback. Repository errors map to 4xx, an unreachable database or broker to 503
with Retry-After."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage.repository.errors import BadInput, NotFound

log = logging.getLogger("memq.api")
RETRY_AFTER_S = 5


class ApiError(Exception):
    """An error with its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, "unauthorized", {"WWW-Authenticate": "Bearer"})


def unavailable(message: str) -> ApiError:
    return ApiError(503, message, "unavailable", {"Retry-After": str(RETRY_AFTER_S)})


def unsupported(field: str, why: str) -> ApiError:
    """A Letta field memq cannot honour, where ignoring it would change the outcome."""
    return ApiError(422, f"{field}: {why}", "unsupported_field")


def _body(status: int, message: str, kind: str) -> dict[str, Any]:
    return {"detail": message, "error": kind, "status": status}


def _json(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(_body(status, message, kind), status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    # The first part says where the field is (a parameter may itself be called `query`).
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)]
    return ".".join(parts) or "body"


def validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """400 for a body that is not JSON, else 422 naming the first bad field."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return 400, f"malformed JSON: {first.get('ctx', {}).get('error', 'cannot parse the body')}"
    return 422, f"{_field(tuple(first.get('loc', ())))}: {first.get('msg', 'invalid')}"


def _is_unreachable(exc: BaseException) -> bool:
    import asyncio

    from sqlalchemy.exc import DBAPIError

    from memq.api.apg import PoolTimeout as AsyncPoolTimeout

    # psycopg's own errors and timeouts come from the event-loop path (memq/api/apg.py).
    if isinstance(exc, (*_unreachable_kinds(), AsyncPoolTimeout, asyncio.TimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _unreachable_kinds() -> tuple[type[Exception], ...]:
    """A database that is down, unreachable or whose connection broke (SQLAlchemy's and psycopg's)."""
    import psycopg
    from sqlalchemy.exc import InterfaceError, OperationalError, TimeoutError as PoolTimeout

    return (OperationalError, InterfaceError, PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError)


def _unanswered(exc: BaseException) -> str | None:
    """The first line of a round trip that passed its deadline (storage/deadline.py), else None."""
    from sqlalchemy.exc import DBAPIError

    from storage.deadline import DatabaseUnavailable

    found = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(found, DatabaseUnavailable):
        return str(found).splitlines()[0]
    return None


def error_response(exc: Exception, method: str, path: str) -> JSONResponse:
    """The JSON answer of an error raised while serving `method path` (the routes' handlers
    below, and memq/api/send_lane.py's)."""
    if isinstance(exc, ApiError):
        return _json(exc.status, exc.message, exc.kind, exc.headers)
    if isinstance(exc, NotFound):
        return _json(404, str(exc.args[0] if exc.args else exc), "not_found")
    if isinstance(exc, BadInput):
        return _json(422, str(exc.args[0] if exc.args else exc), "bad_input")
    if isinstance(exc, RequestValidationError):
        status, message = validation_message(exc)
        return _json(status, message, "malformed_json" if status == 400 else "invalid_request")
    if isinstance(exc, StarletteHTTPException):
        return _json(exc.status_code, str(exc.detail), "http_error", dict(exc.headers or {}))
    unanswered = _unanswered(exc)
    if unanswered is not None:
        log.warning("database did not answer: %s", unanswered)
        # A POST whose COMMIT was cut off may have happened: say what makes a repeat safe.
        repeat = (" (a send repeated with the same Idempotency-Key header answers with the one run)"
                  if method == "POST" else "")
        return _json(503, f"{unanswered}; retry later{repeat}", "unavailable", {"Retry-After": str(RETRY_AFTER_S)})
    if _is_unreachable(exc):
        log.warning("database unreachable: %s", str(exc).splitlines()[0][:200])
        return _json(503, "the database is unreachable; retry later", "unavailable",
                     {"Retry-After": str(RETRY_AFTER_S)})
    log.error("unexpected error on %s %s", method, path, exc_info=exc)
    return _json(500, f"internal error ({type(exc).__name__}); see the server log", "internal")


def install(app: FastAPI) -> None:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, request.method, request.url.path)

    from storage.deadline import DatabaseUnavailable

    # Only Exception's handler answers from Starlette's outermost middleware, which then re-raises
    # (a traceback in the log, the connection closed): an expected failure gets a handler of its own,
    # and so does a database that is down (503 with Retry-After).
    for kind in (ApiError, NotFound, BadInput, RequestValidationError, StarletteHTTPException, DatabaseUnavailable,
                 *_unreachable_kinds(), Exception):
        app.add_exception_handler(kind, handler)
