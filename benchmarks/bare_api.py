"""The API section's baseline: a bare FastAPI app on uvicorn (one POST route that
echoes its JSON body, one GET), run the way `memq serve` runs, with nothing of memq.

    python -m benchmarks.bare_api --port P
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    return app


def main() -> None:
    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run("benchmarks.bare_api:create_app", factory=True, host="127.0.0.1", port=args.port,
                access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
