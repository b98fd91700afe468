"""What the routes do, as plain (blocking) functions over the repository, each
scoped to the caller's tenant. Routes call them on threadpool threads; nothing
here runs a step: a send is committed, then the broker is rung."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text

from memq.api.errors import ApiError, unavailable
from memq.defaults import DEFAULT_HUMAN, DEFAULT_PERSONA
from memq.limits import check_message_fits
from memq.quick.client import QUICK_MAX_CHARS
from storage import repository as repo
from storage.models import Agent, MemoryBlock, Message, Run
from storage.repository import blocks as block_repo
from storage.repository import pages
from storage.repository.errors import BadInput

log = logging.getLogger("memq.api")
BROKER_CHECK_EVERY_S = 1.0
BLOCK_EDIT_WAIT_S = 30.0  # a block edit waits this long for a step in progress to commit
EDIT_HOLD_S = 10.0  # an edit's lease on the agent expires after this (the edit itself takes ms)
EDIT_POLL_S = 0.02


@dataclass
class BlockSpec:
    label: str
    value: str
    limit: int | None = None


class ApiOps:
    def __init__(self, client: Any) -> None:
        self.client = client  # memq.client.Client: the runtime (database) and the doorbell
        self.db = client.rt.db
        self.settings = client.rt.settings
        self._broker_lock = threading.Lock()
        self._broker_checked_s = 0.0
        self._broker_down: str | None = None
        self._owner = f"{socket.gethostname()}:{os.getpid()}"  # in the edit leases it takes

    # -- readiness ------------------------------------------------------------------
    def broker_problem(self) -> str | None:
        """Why the broker is unreachable (None when it is reachable); checked at most once a second."""
        if self.settings.embedded:
            return None
        with self._broker_lock:
            if time.monotonic() - self._broker_checked_s >= BROKER_CHECK_EVERY_S:
                from memq.health import check_broker

                check = check_broker(self.settings)
                self._broker_down = check.detail or "unreachable" if check.down else None
                self._broker_checked_s = time.monotonic()
            return self._broker_down

    def broker_problem_cached(self) -> tuple[bool, str | None]:
        """(fresh, problem): the last check's answer, fresh when it is under a second old."""
        if self.settings.embedded:
            return True, None
        return time.monotonic() - self._broker_checked_s < BROKER_CHECK_EVERY_S, self._broker_down

    def database_problem(self) -> str | None:
        try:
            with self.db.autocommit() as s:
                s.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001
            return str(exc).splitlines()[0][:200]
        return None

    def tenant_for_key(self, key: str) -> str | None:
        """The tenant of a live API key (None: unknown or revoked)."""
        from storage.repository.tenants import tenant_for_key

        with self.db.autocommit() as s:
            return tenant_for_key(s, key)

    # -- agents ---------------------------------------------------------------------
    def create_agent(self, tenant: str, *, name: str, blocks: Sequence[BlockSpec] | None, model: str | None,
                     system: str | None, tags: list[str] | None) -> tuple[Agent, list[Any]]:
        specs = list(blocks) if blocks is not None else [
            BlockSpec("persona", DEFAULT_PERSONA), BlockSpec("human", DEFAULT_HUMAN)]
        labels = [b.label for b in specs]
        if len(set(labels)) != len(labels):
            raise BadInput("memory_blocks: each label may appear once")
        default_limit = self.settings.core_block_limit_chars
        with self.db.transaction() as s:
            agent = repo.create_agent(
                s, name=name, blocks={b.label: b.value for b in specs},
                limit_chars=max([default_limit, *(len(b.value) for b in specs)]),
                model=model, system_prompt=system, tenant_id=tenant,
            )
            for b in specs:
                block_repo.update_block(s, agent.id, b.label, limit=b.limit or default_limit)
            block_repo.update_agent(s, agent, tags=list(tags or []))
            return agent, repo.load_blocks(s, agent.id)

    def agent(self, tenant: str, agent_id: str) -> tuple[Agent, list[Any]]:
        with self.db.transaction() as s:
            agent = repo.get_agent(s, agent_id, tenant_id=tenant)
            return agent, repo.load_blocks(s, agent_id)

    def agents(self, tenant: str, *, name: str | None, tags: Sequence[str], match_all_tags: bool,
               after: str | None, limit: int, descending: bool) -> list[tuple[Agent, list[Any]]]:
        with self.db.transaction() as s:
            rows = repo.list_agents(s, tenant_id=tenant)
            if descending:
                rows.reverse()
            if name is not None:
                rows = [a for a in rows if a.name == name]
            if tags:
                want = set(tags)
                rows = [a for a in rows if (want <= set(a.tags or []) if match_all_tags else want & set(a.tags or []))]
            if after is not None:
                ids = [a.id for a in rows]
                rows = rows[ids.index(after) + 1:] if after in ids else []
            rows = rows[:limit]
            blocks = _blocks_of(s, [a.id for a in rows])
            return [(a, blocks.get(a.id, [])) for a in rows]

    def update_agent(self, tenant: str, agent_id: str, fields: dict[str, Any]) -> tuple[Agent, list[Any]]:
        with self.db.transaction() as s:
            agent = repo.get_agent(s, agent_id, tenant_id=tenant, for_update=True)
            block_repo.update_agent(s, agent, **fields)
            return agent, repo.load_blocks(s, agent_id)

    def delete_agent(self, tenant: str, agent_id: str) -> None:
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant)
            repo.delete_agent(s, agent_id)

    # -- messages and runs ------------------------------------------------------------
    def send(self, tenant: str, agent_id: str, text_: str, *, idempotency_key: str | None = None,
             callback_url: str | None = None) -> Run:
        """Commit the message and its run (and its callback's outbox row), then ring the broker
        (503 first if it is down). A repeated idempotency key answers the first send's run."""
        if callback_url is not None:
            from memq.api.callbacks import check_url

            check_url(callback_url, self.settings)
        problem = self.broker_problem()
        if problem:
            raise unavailable(f"the broker is unreachable ({problem}); nothing was queued, retry later")
        with self.db.transaction() as s:
            agent = repo.get_agent(s, agent_id, tenant_id=tenant)
            if len(text_) > QUICK_MAX_CHARS:  # shorter text fits any window a step can run in (memq/quick)
                check_message_fits(self.settings, s, agent, text_)  # what can never fit its window (memq/limits.py)
            run, created = repo.enqueue_message(s, agent_id, text_, max_chars=self.settings.max_message_chars,
                                                idempotency_key=idempotency_key)
            if created and callback_url is not None:
                from storage.repository.callbacks import add_callback

                add_callback(s, run.id, callback_url)
            queue = agent.queue
        if created:
            self.ring(agent_id, queue)
        return run

    def ring(self, agent_id: str, queue: str) -> None:
        try:
            self.client.doorbell.ring(agent_id, queue)
        except Exception as exc:  # noqa: BLE001 - the run is safe; the reconciler rings it
            log.warning("doorbell for agent %s not delivered (%s); the reconciler will ring it", agent_id, exc)

    def run_states(self, run_ids: list[str]) -> dict[str, tuple[str, int]]:
        """(status, steps) of each run: the run watcher's one query per wake-up (SQLite;
        on Postgres the watcher reads on the event loop, memq/api/fast.py)."""
        with self.db.autocommit_engine.connect() as conn:
            rows = conn.execute(select(Run.id, Run.status, Run.steps).where(Run.id.in_(run_ids)))
            return {r[0]: (r[1], r[2]) for r in rows}

    def run(self, tenant: str, run_id: str) -> Run:
        with self.db.transaction() as s:
            return repo.get_run(s, run_id, tenant_id=tenant)

    def run_messages(self, tenant: str, run_id: str, after: int | None = None) -> tuple[Run, list[Message]]:
        with self.db.autocommit() as s:
            run = repo.get_run(s, run_id, tenant_id=tenant)
            return run, pages.run_messages(s, run_id, after=after)

    def runs(self, tenant: str, **query: Any) -> list[Run]:
        with self.db.transaction() as s:
            return pages.run_page(s, tenant, **query)

    def messages(self, tenant: str, agent_id: str, **query: Any) -> tuple[list[Message], list[Message]]:
        """A page of messages, and the assistant messages whose tool calls its tool results answer."""
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant)
            rows = pages.message_page(s, agent_id, **query)
            return rows, pages.calls_of(s, agent_id, rows)

    def cancel(self, tenant: str, agent_id: str, run_ids: Sequence[str]) -> list[str]:
        """Cancel the agent's queued runs (all, or those named); after the commit, each cancelled
        run is announced as a step's commit is (workers/run_events.py), so its waiters end at once."""
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant, for_update=True)
            cancelled = pages.cancel_queued_runs(s, agent_id, run_ids)
            states = pages.run_states(s, cancelled)
        self.client.rt.run_events.publish_many(states)
        return cancelled

    # -- core memory ----------------------------------------------------------------
    def blocks(self, tenant: str, agent_id: str) -> list[Any]:
        return self.agent(tenant, agent_id)[1]

    def block(self, tenant: str, agent_id: str, label: str) -> MemoryBlock:
        with self.db.transaction() as s:
            repo.get_agent(s, agent_id, tenant_id=tenant)
            return block_repo.get_block(s, agent_id, label)

    def update_block(self, tenant: str, agent_id: str, label: str, value: str | None, limit: int | None) -> MemoryBlock:
        """The edit, made under the agent's lease (storage/repository/blocks.py says why): it waits
        for a step in progress to commit, up to BLOCK_EDIT_WAIT_S (then 409, nothing changed)."""
        token, queue = self._take_edit_lease(tenant, agent_id)
        try:
            with self.db.transaction() as s:
                block_repo.check_edit_lease(s, agent_id, token)
                return block_repo.update_block(s, agent_id, label, value=value, limit=limit)
        except block_repo.AgentBusy as exc:
            raise ApiError(409, str(exc), "agent_busy", {"Retry-After": "1"}) from None
        finally:
            self._release_edit_lease(agent_id, token, queue)

    def _take_edit_lease(self, tenant: str, agent_id: str) -> tuple[int, str]:
        deadline = time.monotonic() + BLOCK_EDIT_WAIT_S
        while True:
            with self.db.autocommit() as s:
                taken = block_repo.take_edit_lease(s, agent_id, tenant, owner=self._owner, hold_s=EDIT_HOLD_S,
                                                   now_s=time.time())
                if taken is None:
                    repo.get_agent(s, agent_id, tenant_id=tenant)  # 404 for an unknown or another tenant's agent
            if taken is not None:
                return taken
            if time.monotonic() >= deadline:
                raise ApiError(409, f"the agent has been in a step for {BLOCK_EDIT_WAIT_S:.0f} s; nothing was "
                                    "changed, retry", "agent_busy", {"Retry-After": "1"})
            time.sleep(EDIT_POLL_S)

    def _release_edit_lease(self, agent_id: str, token: int, queue: str) -> None:
        """Give the lease back, and ring the agent if work waits (a doorbell that came meanwhile
        bounced off the lease, as one that comes during a step does; the step re-checks too)."""
        try:
            with self.db.autocommit() as s:
                block_repo.release_edit_lease(s, agent_id, token, now_s=time.time())
                pending = repo.has_pending_work(s, agent_id)
        except Exception as exc:  # noqa: BLE001 - the lease expires in EDIT_HOLD_S; the reconciler rings
            log.warning("agent %s: edit lease not given back (%s); it expires in %.0f s", agent_id, exc, EDIT_HOLD_S)
            return
        if pending:
            self.ring(agent_id, queue)


def _blocks_of(s: Any, agent_ids: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    if agent_ids:
        stmt = select(MemoryBlock).where(MemoryBlock.agent_id.in_(agent_ids)).order_by(
            MemoryBlock.position, MemoryBlock.id)
        for b in s.scalars(stmt):
            out.setdefault(b.agent_id, []).append(b)
    return out
