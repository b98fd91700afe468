"""Logging for every memq process: one line per record, JSON on request, secrets masked.

* ``MEMQ_LOG_JSON=1``: each record is one JSON object with ``time``, ``level``,
  ``logger``, ``message`` and, when the record was logged inside a step,
  ``agent_id``, ``run_id``, ``step`` (see :func:`bind`); ``exc`` carries a traceback.
* ``MEMQ_LOG_LEVEL`` (default INFO) for the services (worker, beat, flower);
  other CLI commands show WARNING and up, one line each on stderr.
* Redaction: the values of MEMQ_LLM_API_KEY, MEMQ_EMBEDDING_API_KEY,
  MEMQ_FLOWER_PASSWORD, MEMQ_QDRANT_API_KEY and every URL password (``scheme://user:PASSWORD@host``)
  are replaced by ``***`` in the message, its arguments and its traceback.

Only the standard library is imported here: the CLI calls this before every command.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

SECRET_ENV = ("MEMQ_LLM_API_KEY", "MEMQ_EMBEDDING_API_KEY", "MEMQ_FLOWER_PASSWORD", "MEMQ_QDRANT_API_KEY")
URL_ENV = ("MEMQ_DATABASE_URL", "MEMQ_BROKER_URL", "MEMQ_REDIS_URL", "MEMQ_QDRANT_URL", "MEMQ_LLM_API_BASE",
           "MEMQ_EMBEDDING_API_BASE")
CONTEXT_FIELDS = ("agent_id", "run_id", "step", "queue", "request_id", "tenant")
MASK = "***"
CELERY_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")
# scheme://user:password@host -> the password is group "pw"
URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s\"']*:)(?P<pw>[^@\s\"'/]+)@")
_MIN_SECRET = 4  # shorter values would mask ordinary words

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("memq_log_context", default={})


# -- context ------------------------------------------------------------------
def bind(**fields: Any) -> contextvars.Token:
    """Add fields (agent_id, run_id, step, ...) to every record logged in this context."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    return _context.set(merged)


def unbind(token: contextvars.Token) -> None:
    _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get())


# -- redaction ----------------------------------------------------------------
class Redactor:
    """Masks configured secret values and URL passwords in any text."""

    def __init__(self, extra_secrets: Iterable[str | None] = ()) -> None:
        self.secrets: list[str] = []
        self.refresh(extra_secrets)

    def refresh(self, extra_secrets: Iterable[str | None] = ()) -> None:
        found = [os.environ.get(name) for name in SECRET_ENV]
        for name in URL_ENV:
            m = URL_PASSWORD.search(os.environ.get(name) or "")
            if m:
                found.append(m.group("pw"))
        found.extend(extra_secrets)
        # Longest first, so a secret containing another is masked whole.
        values = {v for v in found if v and len(v) >= _MIN_SECRET and v != MASK}
        self.secrets = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if "://" in text:
            text = URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR(text)


class RedactFilter(logging.Filter):
    """Masks secrets in the message, its arguments and its traceback, before any formatting."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg = self.redactor(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


class ContextFilter(logging.Filter):
    """Copies the bound step context (agent_id, run_id, step, queue) onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# -- formatting ---------------------------------------------------------------
def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, context, exc."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return REDACTOR(json.dumps(doc, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """``2025-01-01T12:00:00.000Z INFO memq.step: message [agent_id=... step=3]``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _iso(record.created)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = [f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if getattr(record, k, None) is not None]
        if ctx:
            head, sep, tail = line.partition("\n")
            line = f"{head} [{' '.join(ctx)}]{sep}{tail}"
        return REDACTOR(line)


class CliFormatter(logging.Formatter):
    """What a non-service command shows: ``warning: message (ExcType: first line)``, one line."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            first = (str(exc).strip().splitlines() or [""])[0]
            msg += f" ({type(exc).__name__}: {first})" if first else f" ({type(exc).__name__})"
        return REDACTOR(f"{record.levelname.lower()}: {' '.join(msg.split())}")


class OneLine(logging.StreamHandler):
    """memq's root handler.

    Named ``OneLine`` on purpose: ``memq.cli.output.install_log_handler`` adds its
    own handler only when the root logger has none of that name, so the two never
    print a record twice.
    """

    memq_handler = True


# -- set-up -------------------------------------------------------------------
def env_json() -> bool:
    return (os.environ.get("MEMQ_LOG_JSON") or "").strip().lower() in ("1", "true", "yes", "on")


def env_level(default: str = "INFO") -> str:
    return (os.environ.get("MEMQ_LOG_LEVEL") or default).strip().upper()


def configure(
    level: str | int | None = None,
    *,
    json_logs: bool | None = None,
    cli: bool = False,
    stream: Any = None,
    secrets: Iterable[str | None] = (),
) -> logging.Handler:
    """Install memq's one root handler (replacing any earlier one of ours); idempotent.

    ``cli=True``: a command's stderr — WARNING and up, ``level: message`` lines
    (JSON objects with MEMQ_LOG_JSON=1). Otherwise a service's log at ``level``.
    """
    json_logs = env_json() if json_logs is None else json_logs
    if level is None:
        level = "WARNING" if cli else env_level()
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    REDACTOR.refresh(secrets)

    handler = OneLine(stream or sys.stderr)
    handler.setLevel(numeric)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    if json_logs:
        handler.setFormatter(JsonFormatter())
    elif cli:
        handler.setFormatter(CliFormatter())
    else:
        handler.setFormatter(TextFormatter())

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "memq_handler", False) or type(old).__name__ == "OneLine":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Chatty libraries stay at WARNING unless asked for DEBUG.
    if numeric > logging.DEBUG:
        for name in ("httpx", "httpcore", "LiteLLM", "litellm", "urllib3", "tornado.access",
                     "alembic.runtime.migration", "kombu"):
            logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    # Celery's two lines per task ("received", "succeeded in") repeat what memq's own line per
    # step says (memq.step: outcome, tokens, timings, ids): shown at DEBUG only. Celery reads the
    # level once when the worker starts, and then skips building them; failures still show.
    for name in CELERY_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if numeric > logging.DEBUG else logging.NOTSET)
    logging.captureWarnings(True)
    adopt_library_loggers()
    return handler


# Libraries that attach their own stderr handler at import time (which would
# print unredacted, unformatted lines): their records go through ours instead.
_FOREIGN_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
_adopted = False


def adopt_library_loggers() -> None:
    """Strip the handlers litellm installs on import; cheap to call often."""
    global _adopted
    if _adopted or "litellm" not in sys.modules:
        return
    if not any(getattr(h, "memq_handler", False) for h in logging.getLogger().handlers):
        return  # memq's logging is not in charge of this process
    for name in _FOREIGN_LOGGERS:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if not getattr(h, "memq_handler", False):
                lg.removeHandler(h)
        lg.propagate = True
    _adopted = True


SERVICES = ("worker", "beat", "flower", "serve")


def configure_for_command(command: str | None) -> None:
    """The CLI's hook: services log at MEMQ_LOG_LEVEL, other commands WARNING and up."""
    if command in SERVICES:
        configure()
    else:
        configure(cli=True)
