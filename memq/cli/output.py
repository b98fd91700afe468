"""Printing for every command.

* ``--json``: exactly one JSON document on stdout.
* human output: rich, on stdout.
* errors: one line ``error: ...`` on stderr, with secrets masked.

rich is imported on first use so ``memq --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)@")
_SECRET_ENV = (
    "MEMQ_LLM_API_KEY",
    "MEMQ_EMBEDDING_API_KEY",
    "MEMQ_FLOWER_PASSWORD",
    "MEMQ_QDRANT_API_KEY",
)

_console: Any = None
_err_console: Any = None
_json_emitted = False  # one document per command: an error after it adds none


class CLIError(Exception):
    """A failure the user should see as one line on stderr (exit code attached)."""

    def __init__(self, message: str, code: int = 1, kind: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind  # an ErrorType slug (memq/cli/errors.py); None: from the code


def mask_url(url: str | None) -> str | None:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``."""
    if url is None:
        return None
    return _URL_PASSWORD.sub(lambda m: m.group("head") + "***@", url)


def _secret_values() -> list[str]:
    values = [os.environ.get(name, "") for name in _SECRET_ENV]
    for name in ("MEMQ_DATABASE_URL", "MEMQ_BROKER_URL", "MEMQ_QDRANT_URL"):
        m = _URL_PASSWORD.search(os.environ.get(name, ""))
        if m:
            values.append(m.group("pw"))
    return [v for v in values if len(v) >= 6]


def redact(text: str) -> str:
    """Mask URL passwords and every configured secret value in ``text``."""
    text = mask_url(text) or ""
    for secret in _secret_values():
        text = text.replace(secret, "***")
    return text


def console() -> Any:
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False)
    return _console


def err_console() -> Any:
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, highlight=False)
    return _err_console


def emit_json(doc: Any) -> None:
    """The one JSON document of a ``--json`` command."""
    global _json_emitted
    _json_emitted = True
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str)
    for secret in _secret_values():  # a configured key never leaves the process
        text = text.replace(secret, "***")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def emit_error_json(kind: str, message: str) -> None:
    """``{"error": {"type", "message"}}`` on stdout for a --json command that failed
    (unless the command printed its document already)."""
    if not _json_emitted:
        emit_json({"error": {"type": kind, "message": " ".join(redact(str(message)).split())}})


def error_line(message: str) -> None:
    """``error: <message>`` as one line on stderr."""
    one_line = " ".join(redact(str(message)).split()) or "unknown error"
    sys.stderr.write(f"error: {one_line}\n")
    sys.stderr.flush()


def note(message: str) -> None:
    """A dim hint on stderr (human mode only; never mixed into JSON on stdout)."""
    from rich.text import Text

    err_console().print(Text(message, style="dim"))


def install_log_handler() -> None:
    """Log records of WARNING and up as one line each on stderr: never a traceback.

    Commands other than `memq worker` use this, so a warning from a library or
    from an in-process step stays one readable line with secrets masked.
    """
    import logging

    class OneLine(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                msg = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad log call must not crash the command
                msg = str(record.msg)
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None:
                first = (str(exc).strip().splitlines() or [""])[0]
                msg += f" ({type(exc).__name__}: {first})" if first else f" ({type(exc).__name__})"
            sys.stderr.write(f"{record.levelname.lower()}: {' '.join(redact(msg).split())}\n")

    root = logging.getLogger()
    if not any(type(h).__name__ == "OneLine" for h in root.handlers):
        handler = OneLine(logging.WARNING)
        root.addHandler(handler)
