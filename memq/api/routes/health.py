"""`/healthz` (the process answers) and `/readyz` (database and broker reachable); no key needed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from memq.api.deps import State, blocking
from memq.api.errors import RETRY_AFTER_S

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database and the broker are reachable (503 otherwise)")
async def readyz(st: State) -> JSONResponse:
    database = await blocking(st.ops.database_problem)
    broker = await blocking(st.ops.broker_problem)
    checks = {"database": database or "ok", "broker": broker or "ok"}
    if database or broker:
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})
    return JSONResponse({"status": "ready", "checks": checks})
