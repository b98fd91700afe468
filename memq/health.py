"""What `memq status` reports: every dependency, the queues, the workers, the waiting work.

Every check has its own timeout (at most ``CHECK_TIMEOUT_S``) and all of them run
at once on daemon threads, so a black-holed host costs the command a few
seconds, never a hang. Queue depths come from workers/queues.py, shared with the worker's metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from memq.logging_setup import URL_PASSWORD
from memq.settings import Settings
from workers.queues import broker_kind, queue_depths, redis_client

CHECK_TIMEOUT_S = 3.0
# A loaded database answers slowly but is not down: it gets longer, and a slow
# answer is reported as "warn" with its time (exit 0), not as a failure.
DB_TIMEOUT_S = 10.0
DB_SLOW_MS = 1000.0
PING_TIMEOUT_S = 1.0

UP, DOWN, WARN = "up", "down", "warn"
NOT_CHECKED, EMBEDDED, SKIPPED = "not checked", "embedded", "skipped"

def mask(url: str | None) -> str | None:
    if url is None:
        return None
    return URL_PASSWORD.sub(lambda m: m.group("head") + "***@", url)


@dataclass
class Check:
    status: str
    target: str | None = None
    detail: str | None = None
    latency_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def down(self) -> bool:
        return self.status == DOWN

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": self.status}
        if self.target is not None:
            doc["target"] = self.target
        if self.detail is not None:
            doc["detail"] = self.detail
        if self.latency_ms is not None:
            doc["latency_ms"] = round(self.latency_ms, 1)
        doc.update(self.extra)
        return doc


def _error(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__  # the class name only when there is nothing else
    return mask(text)[:300]  # type: ignore[index]


# -- the broker -----------------------------------------------------------------
def check_broker(settings: Settings) -> Check:
    if settings.embedded:
        return Check(EMBEDDED, detail="no broker: steps run in-process (embedded mode)")
    url = settings.broker_url or ""
    target = mask(url)
    started = time.perf_counter()
    try:
        kind = broker_kind(url)
        if kind == "redis":
            redis_client(url, 2.0).ping()
        elif kind == "amqp":
            from kombu import Connection

            with Connection(url, connect_timeout=2.0) as conn:
                conn.connect()
        else:
            return Check(NOT_CHECKED, target, f"no reachability check for {kind}:// brokers")
    except Exception as exc:  # noqa: BLE001
        return Check(DOWN, target, _error(exc), (time.perf_counter() - started) * 1000)
    return Check(UP, target, kind, (time.perf_counter() - started) * 1000)


def check_queues(settings: Settings) -> dict[str, int] | None:
    if settings.embedded:
        return None
    return queue_depths(settings.broker_url or "", timeout_s=2.0)


def check_workers(settings: Settings) -> Check:
    """Celery ``control.ping``: which workers answer within PING_TIMEOUT_S."""
    if settings.embedded:
        return Check(EMBEDDED, detail="embedded mode: `memq worker` polls the database")
    from workers.celery_app import create_celery_app

    app = create_celery_app(settings)
    app.conf.broker_connection_max_retries = 1
    app.conf.broker_connection_timeout = 2.0
    started = time.perf_counter()
    try:
        replies = app.control.ping(timeout=PING_TIMEOUT_S) or []
    except Exception as exc:  # noqa: BLE001
        return Check(DOWN, detail=_error(exc))
    finally:
        try:
            app.close()
        except Exception:  # noqa: BLE001
            pass
    names = sorted(name for reply in replies for name in reply)
    latency = (time.perf_counter() - started) * 1000
    if not names:
        return Check(WARN, detail=f"no worker answered a ping within {PING_TIMEOUT_S:g} s",
                     extra={"count": 0, "names": []})
    return Check(UP, detail=f"{len(names)} answered", latency_ms=latency,
                 extra={"count": len(names), "names": names})


# -- the database ---------------------------------------------------------------
def _engine(url: str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from storage.db import check_database_url, normalize_url

    check_database_url(url)
    url = normalize_url(url)
    if url.startswith("sqlite"):
        args: dict[str, Any] = {"timeout": DB_TIMEOUT_S}
    else:
        args = {"connect_timeout": int(DB_TIMEOUT_S),
                "options": f"-c statement_timeout={int(DB_TIMEOUT_S * 1000)}"}
    return create_engine(url, poolclass=NullPool, connect_args=args)


def check_database(settings: Settings) -> tuple[Check, dict[str, Any] | None]:
    """Reachability, schema revision and the work waiting in inboxes (one connection)."""
    from sqlalchemy import distinct, func, select, text

    url = settings.resolved_database_url
    target = mask(url)
    if url.startswith("sqlite"):
        from pathlib import Path

        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and not Path(path).exists():
            return Check(WARN, target, "no database file yet: the first memq command creates it"), None
    started = time.perf_counter()
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            latency = (time.perf_counter() - started) * 1000
            try:
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except Exception:  # noqa: BLE001
                return Check(DOWN, target, "no memq schema: run `memq db upgrade`", latency), None
            conn.rollback()
            pending = _pending(conn, select, func, distinct)
    except Exception as exc:  # noqa: BLE001
        return Check(DOWN, target, _error(exc), (time.perf_counter() - started) * 1000), None
    finally:
        engine.dispose()
    if latency > DB_SLOW_MS:
        return Check(WARN, target, f"slow: answered in {latency / 1000:.1f} s (schema {revision})", latency), pending
    return Check(UP, target, f"schema {revision}", latency), pending


def _as_utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _pending(conn: Any, select: Any, func: Any, distinct: Any) -> dict[str, Any]:
    from storage.models import Agent, InboxItem

    waiting = InboxItem.consumed_at.is_(None)
    messages, agents, oldest = conn.execute(
        select(func.count(InboxItem.id), func.count(distinct(InboxItem.agent_id)), func.min(InboxItem.created_at))
        .where(waiting)
    ).one()
    heartbeats = conn.execute(select(func.count(Agent.id)).where(Agent.active_run_id.is_not(None))).scalar()
    # Agents whose last step raised instead of committing (a committed step clears last_error).
    failing = Agent.last_error.is_not(None)
    failing_count = conn.execute(select(func.count(Agent.id)).where(failing)).scalar()
    failing_rows = conn.execute(
        select(Agent.id, Agent.step_attempts, Agent.last_error, Agent.last_error_at)
        .where(failing).order_by(Agent.last_error_at.desc()).limit(5)
    ).all()
    rows = conn.execute(
        select(InboxItem.agent_id, func.count(InboxItem.id), func.min(InboxItem.created_at))
        .where(waiting)
        .group_by(InboxItem.agent_id)
        .order_by(func.min(InboxItem.created_at))
        .limit(5)
    ).all()
    now = datetime.now(timezone.utc)

    def wait_s(dt: datetime | None) -> float | None:
        dt = _as_utc(dt)
        return None if dt is None else round(max(0.0, (now - dt).total_seconds()), 1)

    return {
        "agents": int(agents or 0),
        "messages": int(messages or 0),
        "agents_mid_turn": int(heartbeats or 0),
        "agents_failing": int(failing_count or 0),
        "failing": [
            {"agent_id": a, "attempts": int(n or 0), "last_error": e,
             "last_error_at": _as_utc(at).isoformat() if at else None}
            for a, n, e, at in failing_rows
        ],
        "longest_wait_s": wait_s(oldest),
        "oldest": _as_utc(oldest).isoformat() if oldest else None,
        "longest_waiting": [
            {"agent_id": a, "pending": int(n), "oldest": _as_utc(o).isoformat(), "wait_s": wait_s(o)}
            for a, n, o in rows
        ],
    }


# -- Qdrant and the LLM ---------------------------------------------------------
def check_qdrant(settings: Settings) -> Check:
    """A Qdrant server: GET /readyz. Without MEMQ_QDRANT_URL the store is embedded (a path)."""
    if not settings.qdrant_url:
        return Check(EMBEDDED, settings.resolved_qdrant_path,
                     "in-process store (qdrant-edge); the first worker to open it serves the others")
    import httpx

    url = settings.qdrant_url.rstrip("/") + "/readyz"
    headers = {"api-key": settings.qdrant_api_key} if settings.qdrant_api_key else {}
    started = time.perf_counter()
    try:
        resp = httpx.get(url, headers=headers, timeout=CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        return Check(DOWN, mask(settings.qdrant_url), _error(exc), (time.perf_counter() - started) * 1000)
    latency = (time.perf_counter() - started) * 1000
    status = UP if resp.status_code < 300 else DOWN
    return Check(status, mask(settings.qdrant_url), f"GET /readyz: HTTP {resp.status_code}", latency)


def check_llm(settings: Settings) -> Check:
    """GET {api_base}/models: any answer but 5xx or a refused key means reachable."""
    if not settings.llm_api_base:
        what = settings.llm_model or "no MEMQ_LLM_MODEL"
        return Check(NOT_CHECKED, detail=f"no MEMQ_LLM_API_BASE ({what}: the provider's default endpoint)")
    import httpx

    base = settings.llm_api_base.rstrip("/")
    headers = {"Authorization": f"Bearer {settings.llm_api_key}"} if settings.llm_api_key else {}
    started = time.perf_counter()
    try:
        resp = httpx.get(f"{base}/models", headers=headers, timeout=CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        return Check(DOWN, mask(base), _error(exc), (time.perf_counter() - started) * 1000)
    latency = (time.perf_counter() - started) * 1000
    code = resp.status_code
    if code >= 500:
        return Check(DOWN, mask(base), f"GET /models: HTTP {code}", latency)
    if code in (401, 403):
        return Check(DOWN, mask(base), f"GET /models: HTTP {code} (the API key was refused)", latency)
    return Check(UP, mask(base), f"GET /models: HTTP {code}", latency)


# -- everything at once ---------------------------------------------------------
def _run_all(jobs: dict[str, Callable[[], Any]], deadline_s: float) -> dict[str, Any]:
    """Run each job on a daemon thread; a job still running at the deadline is 'timed out'."""
    results: dict[str, Any] = {}

    def runner(name: str, fn: Callable[[], Any]) -> None:
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001
            results[name] = exc

    threads = [threading.Thread(target=runner, args=item, daemon=True, name=f"memq-status-{item[0]}")
               for item in jobs.items()]
    for t in threads:
        t.start()
    end = time.monotonic() + deadline_s
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    for name in jobs:
        results.setdefault(name, TimeoutError(f"no answer within {deadline_s:g} s"))
    return results


def status(settings: Settings) -> dict[str, Any]:
    """The `memq status --json` document; ``ok`` is false when a configured dependency is down."""
    deadline = CHECK_TIMEOUT_S + 0.5
    first = _run_all(
        {
            "database": lambda: check_database(settings),
            "broker": lambda: check_broker(settings),
            "qdrant": lambda: check_qdrant(settings),
            "llm": lambda: check_llm(settings),
        },
        max(CHECK_TIMEOUT_S, DB_TIMEOUT_S) + 0.5,
    )
    checks: dict[str, Check] = {}
    pending = None
    db = first["database"]
    if isinstance(db, BaseException):
        checks["database"] = Check(DOWN, mask(settings.resolved_database_url), _error(db))
    else:
        checks["database"], pending = db
    for name in ("broker", "qdrant", "llm"):
        value = first[name]
        checks[name] = Check(DOWN, detail=_error(value)) if isinstance(value, BaseException) else value

    queues: dict[str, int] | None = None
    if checks["broker"].status == UP:
        second = _run_all({"workers": lambda: check_workers(settings), "queues": lambda: check_queues(settings)},
                          deadline)
        workers = second["workers"]
        checks["workers"] = Check(DOWN, detail=_error(workers)) if isinstance(workers, BaseException) else workers
        depth = second["queues"]
        queues = None if isinstance(depth, BaseException) else depth
    elif checks["broker"].status == EMBEDDED:
        checks["workers"] = check_workers(settings)
    else:
        checks["workers"] = Check(SKIPPED, detail="the broker is down")

    down = [name for name, c in checks.items() if c.down]
    return {
        "ok": not down,
        "mode": "embedded" if settings.embedded else "server",
        "down": down,
        "checks": {name: c.as_dict() for name, c in checks.items()},
        "queues": queues,
        "pending": pending,
    }
