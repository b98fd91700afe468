"""What every route shares: the process's state, the caller's tenant (from its
key), path ids in memq's form, and running blocking work off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from memq.api import ids
from memq.api.errors import unauthorized
from memq.api.keycache import KeyCache
from memq.api.ops import ApiOps
from memq.api.watcher import RunWatcher

T = TypeVar("T")


@dataclass
class ApiState:
    ops: ApiOps
    watcher: RunWatcher
    default_system: str
    wait_s: float
    keys: KeyCache
    fast: Any = None  # memq.api.fast.FastPath on Postgres: the common send and answer on the event loop


# Dependencies are `async def`: FastAPI runs a plain `def` one on a threadpool thread per request.
async def state(request: Request) -> ApiState:
    return request.app.state.memq


async def tenant(request: Request, st: Annotated[ApiState, Depends(state)]) -> str:
    """The tenant of the request's bearer key; 401 without a live key."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    key = key.strip()
    fresh, found = st.keys.cached(key)
    if not fresh:
        found = await run_in_threadpool(st.keys.look_up, key)
    if found is None:
        raise unauthorized("invalid or revoked API key")
    request.state.tenant = found
    return found


async def _agent_path(request: Request, agent_id: str = Path(description="`agent-<uuid>` or `<uuid>`")) -> str:
    request.state.agent_id = agent_id
    return ids.agent_id(agent_id)


State = Annotated[ApiState, Depends(state)]
Tenant = Annotated[str, Depends(tenant)]
AgentId = Annotated[str, Depends(_agent_path)]


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run repository work on a threadpool thread (the event loop never waits on the database)."""
    return await run_in_threadpool(fn, *args, **kwargs)
