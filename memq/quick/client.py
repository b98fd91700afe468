"""QuickClient: the full client's read methods and a queue-only send over psycopg.

Each quick method answers the common case and otherwise hands the call to the
full ``memq.client.Client`` (built on first need): a ref that is not a whole,
existing id (prefixes, names and unknown ids resolve there, with its errors),
text the storage door would change or refuse, an idempotency key, a database
error before anything was written. Any method it does not define is the full
client's. Rows are read with the columns the views expect, so the documents are
the same.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone
from functools import partial
from typing import Any

from memq.constants import EventType, RunStatus
from memq.quick import pg
from memq.settings import Settings

log = logging.getLogger("memq.client")

FULL_ID_LEN = 36
# Longer messages take the full path, which refuses what can never fit the agent's
# window (memq/limits.py); this much fits any window a step can run in.
QUICK_MAX_CHARS = 1_000

# Whether the agent's step waits for the provider's batch API (ParkState parked / submitted).
WAITING_PROVIDER = ("EXISTS (SELECT 1 FROM parked_steps p WHERE p.agent_id = agents.id "
                    "AND p.state IN ('parked', 'submitted')) AS waiting_provider")

class Fallback(Exception):
    """The quick path cannot answer this call; the full client will."""


class QuickClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: Any = None
        self._full: Any = None
        self._bell: Any = None

    # -- plumbing --------------------------------------------------------------
    @property
    def full(self) -> Any:
        """The full client, built the first time a call needs it."""
        if self._full is None:
            from memq.client import Client
            from workers.runtime import Runtime

            # Client.connect's server mode, with the doorbell built on first ring.
            self._full = Client(Runtime.build(self.settings), self._doorbell())
        return self._full

    def _doorbell(self) -> Any:
        if self._bell is None:
            from memq.quick.doorbell import BrokerBell

            self._bell = BrokerBell(self.settings)
        return self._bell

    @property
    def doorbell(self) -> Any:
        """The quick doorbell (asking the full client for its own would build it: ~1.5 s of imports
        for a `send --wait`, whose wait looks the doorbell up)."""
        return self._doorbell()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.full, name)

    def __enter__(self) -> "QuickClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for part in (self._full, self._bell, self._conn):
            close = getattr(part, "close", None)
            if close is not None:
                close()
        self._bell = self._conn = self._full = None

    def _db(self) -> Any:
        if self._conn is None or self._conn.closed:  # a round trip past its deadline closed it
            self._conn = pg.connect(self.settings.resolved_database_url, self.settings.db_deadline_s)
        return self._conn

    def _quick(self, name: str, fn: Any, *args: Any) -> Any:
        """fn(*args) on the quick path; the full client's ``name`` when it falls back."""
        import psycopg

        try:
            return fn(*args)
        except (Fallback, psycopg.Error) as exc:
            if isinstance(exc, TimeoutError):  # DatabaseUnavailable: the full client would wait as long again
                raise
            log.debug("quick path: %s falls back (%s)", name, exc)
            return getattr(self.full, name)(*args)

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        row = self._db().execute(sql, params).fetchone()
        if row is None:
            raise Fallback("no such row")
        return row

    # -- ids -------------------------------------------------------------------
    _TABLES = {"agent": "agents", "run": "runs", "schedule": "schedules", "batch": "batches"}

    def resolve(self, kind: str, ref: str) -> str:
        return self._quick("resolve", self._resolve, kind, ref)

    def resolve_agent(self, ref: str) -> str:
        return self.resolve("agent", ref)

    def _resolve(self, kind: str, ref: str) -> str:
        """A whole id that exists is itself (the full client resolves the same way first)."""
        if kind not in self._TABLES or len(ref or "") != FULL_ID_LEN:
            raise Fallback("not a whole id")
        self._one(f"SELECT 1 FROM {self._TABLES[kind]} WHERE id = %s", (ref,))
        return ref

    # -- reads -----------------------------------------------------------------
    def list_agents(self) -> list[Any]:
        return self._quick("list_agents", self._list_agents)

    def _list_agents(self) -> list[Any]:
        from memq.views import AgentView

        rows = self._db().execute(f"SELECT *, {WAITING_PROVIDER} FROM agents ORDER BY created_at, id").fetchall()
        now = time.time()
        return [AgentView.of(a, now) for a in rows]

    def get_agent(self, agent_id: str) -> Any:
        return self._quick("get_agent", self._get_agent, agent_id)

    def _get_agent(self, agent_id: str) -> Any:
        from memq.views import AgentView

        agent = self._one(f"SELECT *, {WAITING_PROVIDER} FROM agents WHERE id = %s", (agent_id,))
        in_context = self._one("SELECT count(*) AS n FROM messages WHERE agent_id = %s AND id >= %s",
                               (agent_id, agent.context_start_id)).n
        return AgentView.of(agent, time.time(), int(in_context))

    def _check_agent(self, agent_id: str) -> None:
        self._one("SELECT 1 FROM agents WHERE id = %s", (agent_id,))

    def memory(self, agent_id: str) -> list[Any]:
        return self._quick("memory", self._memory, agent_id)

    def _memory(self, agent_id: str) -> list[Any]:
        from memq.views import BlockView

        self._check_agent(agent_id)
        rows = self._db().execute(
            "SELECT * FROM memory_blocks WHERE agent_id = %s ORDER BY position, id", (agent_id,)).fetchall()
        return [BlockView.of(b) for b in rows]

    def messages(self, agent_id: str, limit: int = 100) -> list[Any]:
        return self._quick("messages", self._messages, agent_id, limit)

    def _messages(self, agent_id: str, limit: int = 100) -> list[Any]:
        from memq.views import MessageView

        self._check_agent(agent_id)
        rows = self._db().execute(
            "SELECT * FROM messages WHERE agent_id = %s ORDER BY id DESC LIMIT %s", (agent_id, limit)).fetchall()
        return [MessageView.of(m) for m in reversed(rows)]

    def list_schedules(self, agent_id: str | None = None) -> list[Any]:
        return self._quick("list_schedules", self._list_schedules, agent_id)

    def _list_schedules(self, agent_id: str | None = None) -> list[Any]:
        from memq.views import ScheduleView

        sql = "SELECT s.*, r.status AS last_run_status FROM schedules s LEFT JOIN runs r ON r.id = s.last_run_id"
        params: tuple[Any, ...] = ()
        if agent_id is not None:
            self._check_agent(agent_id)
            sql, params = sql + " WHERE s.agent_id = %s", (agent_id,)
        rows = self._db().execute(sql + " ORDER BY s.created_at, s.id", params).fetchall()
        return [ScheduleView.of(s, s.last_run_status) for s in rows]

    def archival_search(self, agent_id: str, query: str, page: int = 0) -> dict[str, Any]:
        return self._quick("archival_search", partial(self._search, "archival"), agent_id, query, page)

    def recall_search(self, agent_id: str, query: str, page: int = 0, start: Any = None,
                      end: Any = None) -> dict[str, Any]:
        return self._quick("recall_search", partial(self._search, "recall"), agent_id, query, page, start, end)

    def _search(self, kind: str, agent_id: str, *args: Any) -> dict[str, Any]:
        from memq.memory_client import _page_doc
        from memq.quick.search import Fallback as SearchFallback, QuickSearch

        self._check_agent(agent_id)
        try:
            search = QuickSearch(self.settings, self._db())
            return _page_doc(getattr(search, kind)(agent_id, *args))
        except SearchFallback as exc:
            raise Fallback(str(exc)) from exc

    def batch_status(self, batch_id: str) -> Any:
        return self._quick("batch_status", self._batch_status, batch_id)

    def _batch_status(self, batch_id: str) -> Any:
        from memq.batches import BatchStatus

        batch = self._one("SELECT total, invalid, cancelled FROM batches WHERE id = %s", (batch_id,))
        rows = self._db().execute(
            "SELECT status, count(*) AS n, coalesce(sum(prompt_tokens), 0) AS pt,"
            " coalesce(sum(completion_tokens), 0) AS ct, coalesce(sum(cost_usd), 0) AS cost"
            " FROM runs WHERE batch_id = %s GROUP BY status", (batch_id,)).fetchall()
        by_status = {r.status: int(r.n) for r in rows}
        return BatchStatus(
            batch_id=batch_id, total=batch.total, invalid=batch.invalid, cancelled=batch.cancelled,
            finished=all(RunStatus(st).finished for st in by_status), counts=by_status,
            prompt_tokens=int(sum(r.pt for r in rows)), completion_tokens=int(sum(r.ct for r in rows)),
            cost_usd=float(sum(r.cost for r in rows)),
        )

    def get_run(self, run_id: str) -> Any:
        return self._quick("get_run", self._get_run, run_id)

    def _get_run(self, run_id: str) -> Any:
        from memq.views import RunView

        return RunView.of(self._one("SELECT * FROM runs WHERE id = %s", (run_id,)))

    def wait(self, run_id: str, timeout_s: float = 120.0) -> Any:
        """Poll until the run has finished or timeout_s passed (as Client.wait does)."""
        from memq.waiting import wait_for_run

        return wait_for_run(self.get_run, run_id, timeout_s)

    # -- send ------------------------------------------------------------------
    def send(self, agent_id: str, text: str, *, idempotency_key: str | None = None, wait: bool = False,
             timeout_s: float = 120.0, llm_mode: str = "normal") -> Any:
        """Queue a message (committed before the doorbell rings); optionally wait for its run."""
        kwargs = {"idempotency_key": idempotency_key, "wait": wait, "timeout_s": timeout_s}
        if llm_mode != "normal":  # the full client sets the run's mode in the send's transaction
            return self.full.send(agent_id, text, llm_mode=llm_mode, **kwargs)
        try:
            view, queue = self._enqueue(agent_id, text, idempotency_key)
        except Fallback as exc:
            log.debug("quick path: send falls back (%s)", exc)
            return self.full.send(agent_id, text, **kwargs)
        self._ring(agent_id, queue)
        return self.wait(view.run_id, timeout_s) if wait else view

    def _enqueue(self, agent_id: str, text: str, idempotency_key: str | None) -> tuple[Any, str]:
        import psycopg
        from psycopg.types.json import Json

        from memq.isotime import iso_utc
        from memq.service_errors import send_not_answered
        from memq.text import clean_text
        from memq.views import RunView
        from storage.deadline import DatabaseUnavailable

        if idempotency_key is not None or not text.strip() or len(text) > self.settings.max_message_chars:
            raise Fallback("idempotency key, empty or long text")  # the full path says what is wrong
        if clean_text(text)[1] is not None:
            raise Fallback("text the storage door cleans")
        if len(text) > QUICK_MAX_CHARS:  # the full path checks it against the agent's window (memq/limits.py)
            raise Fallback("long text")
        now = datetime.now(timezone.utc)
        event = {"type": EventType.USER_MESSAGE.value, "message": text, "time": iso_utc(now)}
        run_id = str(uuid.uuid4())
        conn = self._db()  # DatabaseUnavailable here: nothing was sent
        try:
            with conn.transaction():
                # The agent's row lock orders concurrent sends (as repository.enqueue_message).
                agent = self._one("SELECT queue FROM agents WHERE id = %s FOR UPDATE", (agent_id,))
                run = self._one(
                    "INSERT INTO runs (id, agent_id, status, steps, replies, prompt_tokens, completion_tokens,"
                    " cost_usd, created_at) VALUES (%s, %s, %s, 0, %s, 0, 0, 0, %s) RETURNING *",
                    (run_id, agent_id, RunStatus.QUEUED.value, Json([]), now))
                conn.execute("INSERT INTO inbox (agent_id, run_id, event, created_at) VALUES (%s, %s, %s, %s)",
                             (agent_id, run_id, Json(event), now))
        except DatabaseUnavailable as exc:  # its COMMIT may have been cut off: say what is safe
            raise DatabaseUnavailable(send_not_answered(exc, idempotency_key)) from exc
        except psycopg.Error as exc:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.UNKNOWN:
                raise  # the commit's outcome is unknown: sending again could queue it twice
            raise Fallback(str(exc)) from exc
        return RunView.of(run), agent.queue

    def _ring(self, agent_id: str, queue: str) -> None:
        try:
            self._doorbell().ring(agent_id, queue)
        except Exception as exc:  # the message is safe in the database already
            from memq.service_errors import doorbell_not_delivered

            log.warning("%s", doorbell_not_delivered(self.settings.broker_url, exc, agent_id))
