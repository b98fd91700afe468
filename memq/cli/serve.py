"""`memq serve`: the HTTP API (FastAPI on uvicorn). No step runs in it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class HttpParser(StrEnum):
    AUTO = "auto"  # httptools when installed, else h11
    HTTPTOOLS = "httptools"
    H11 = "h11"


class EventLoop(StrEnum):
    AUTO = "auto"  # uvloop when installed, else asyncio
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8283,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (each with its own connections).")] = 1,
    http: Annotated[HttpParser, typer.Option(help="HTTP parser (auto: httptools when installed).")] = HttpParser.AUTO,
    loop: Annotated[EventLoop, typer.Option(help="Event loop (auto: uvloop when installed).")] = EventLoop.AUTO,
) -> None:
    """Serve the HTTP API: Letta-compatible routes, keys and tenants (`memq key create`)."""
    import uvicorn

    from memq.cli.connect import load_settings

    settings = load_settings()
    uvicorn.run(
        "memq.api.app:create_app", factory=True, host=host, port=port, workers=workers,
        access_log=False, log_config=None, log_level=settings.log_level.lower(), http=http.value, loop=loop.value,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
