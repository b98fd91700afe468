"""The Python client: what the CLI does, as a library.

    with Client.connect() as memq:
        agent = memq.create_agent("ada", persona="...", human="...")
        run = memq.send(agent.id, "hello", wait=True, timeout_s=60)
        print(run.status, run.replies)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from memq.defaults import DEFAULT_HUMAN, DEFAULT_PERSONA
from memq.batches import BatchOps
from memq.ingest_client import IngestOps
from memq.limits import check_message_fits
from memq.memory_client import MemoryOps
from memq.provider_batch_client import ProviderBatchOps, checked_mode
from memq.schedules_client import ScheduleOps
from memq.settings import Settings
from memq.views import AgentView, BlockView, MessageView, RunView
from storage import repository as repo
from storage.deadline import DatabaseUnavailable
from workers.runtime import Runtime

log = logging.getLogger("memq.client")


class Client(ScheduleOps, BatchOps, MemoryOps, IngestOps, ProviderBatchOps):
    """Talks to memq's database and rings workers; one per process is plenty."""

    def __init__(self, rt: Runtime, doorbell: Any, indexer: Any = None, *, runs_steps: bool = False) -> None:
        """runs_steps: steps run on this process's threads (embedded); their database has no
        deadline (leases and fencing cover a frozen server there). Otherwise every Postgres
        round trip of the client gives up after MEMQ_DB_DEADLINE_S (storage/deadline.py)."""
        self.rt = rt
        self.doorbell = doorbell
        self.indexer = indexer
        if not runs_steps:
            rt.db.set_deadline(rt.settings.db_deadline_s)

    @classmethod
    def connect(cls, settings: Settings | None = None, *, in_process_worker: bool | None = None) -> "Client":
        """Build a client. Embedded (no broker) runs steps on threads of this process."""
        settings = settings or Settings()
        rt = Runtime.build(settings)
        if settings.embedded if in_process_worker is None else in_process_worker:
            from workers.doorbell import LocalDoorbell
            from workers.indexer import BackgroundIndexer

            if settings.embedded and rt.db.is_sqlite:
                _upgrade_or_close(rt)  # nothing starts before migrations (the indexer reads its cursors)
            return cls(rt, LocalDoorbell(rt), BackgroundIndexer(rt).start(), runs_steps=True)
        from workers.celery_app import create_celery_app
        from workers.doorbell import CeleryDoorbell

        return cls(rt, CeleryDoorbell(create_celery_app(settings)))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        close = getattr(self.doorbell, "close", None)
        if close:
            close()
        if self.indexer is not None:
            self.indexer.stop()
        self.rt.close()

    @property
    def settings(self) -> Settings:
        return self.rt.settings

    def create_agent(
        self,
        name: str,
        *,
        persona: str | None = None,
        human: str | None = None,
        model: str | None = None,
        system_prompt: str | None = None,
    ) -> AgentView:
        blocks = {"persona": persona or DEFAULT_PERSONA, "human": human or DEFAULT_HUMAN}
        with self.rt.db.transaction() as s:
            agent = repo.create_agent(
                s,
                name=name,
                blocks=blocks,
                limit_chars=self.settings.core_block_limit_chars,
                model=model,
                system_prompt=system_prompt,
            )
            return AgentView.of(agent, time.time())

    def list_agents(self) -> list[AgentView]:
        from storage.repository.parked import agents_waiting_for_provider

        with self.rt.db.transaction() as s:
            now = time.time()
            agents = repo.list_agents(s)
            waiting = agents_waiting_for_provider(s, [a.id for a in agents])
            return [AgentView.of(a, now, waiting_provider=a.id in waiting) for a in agents]

    def get_agent(self, agent_id: str) -> AgentView:
        """The agent with its context usage (tokens / window, messages in context and recall)."""
        from storage.repository.parked import agents_waiting_for_provider

        with self.rt.db.transaction() as s:
            agent = repo.get_agent(s, agent_id)
            in_context = repo.count_from(s, agent_id, agent.context_start_id)
            waiting = agent_id in agents_waiting_for_provider(s, [agent_id])
            return AgentView.of(agent, time.time(), in_context, waiting_provider=waiting)

    def resolve(self, kind: str, ref: str) -> str:
        """The full id of an agent, run, schedule or batch from its id or a unique prefix
        (4+ characters); an agent also from its unique name. Ambiguous: BadInput listing ids."""
        from storage.repository import resolve

        with self.rt.db.autocommit() as s:
            return getattr(resolve, f"resolve_{kind}")(s, ref)

    def resolve_agent(self, ref: str) -> str:
        """``memq send ada "hi"`` and ``memq send 1f3a "hi"``: the agent's full id."""
        return self.resolve("agent", ref)

    def delete_agent(self, agent_id: str) -> None:
        with self.rt.db.transaction() as s:
            repo.delete_agent(s, agent_id)

    def send(
        self,
        agent_id: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout_s: float = 120.0,
        llm_mode: str = "normal",
    ) -> RunView:
        """Queue a message (committed before the doorbell rings); optionally wait for its run.

        llm_mode="provider_batch": the run's steps go through the provider's batch API
        (half price where the provider offers it, one provider round per step)."""
        mode = checked_mode(self.settings, llm_mode)
        try:
            with self.rt.db.transaction() as s:
                agent = repo.get_agent(s, agent_id)
                check_message_fits(self.settings, s, agent, text)  # what can never fit its window
                run, created = repo.enqueue_message(
                    s,
                    agent_id,
                    text,
                    max_chars=self.settings.max_message_chars,
                    idempotency_key=idempotency_key,
                )
                if created:
                    from storage.repository.parked import set_run_mode

                    set_run_mode(s, [run.id], mode)
                queue = agent.queue
                view = RunView.of(run)
        except DatabaseUnavailable as exc:  # its COMMIT may have been cut off: say what is safe
            from memq.service_errors import send_not_answered

            raise DatabaseUnavailable(send_not_answered(exc, idempotency_key)) from exc
        if created:
            try:
                self.doorbell.ring(agent_id, queue)
            except Exception as exc:  # the message is safe in the database already
                from memq.service_errors import doorbell_not_delivered

                log.warning("%s", doorbell_not_delivered(self.settings.broker_url, exc, agent_id))
        return self.wait(view.run_id, timeout_s) if wait else view

    def get_run(self, run_id: str) -> RunView:
        with self.rt.db.transaction() as s:
            return RunView.of(repo.get_run(s, run_id))

    def wait(self, run_id: str, timeout_s: float = 120.0) -> RunView:
        """Poll until the run has finished or timeout_s passed; returns its latest state."""
        from memq.waiting import wait_for_run

        return wait_for_run(self.get_run, run_id, timeout_s)

    def messages(self, agent_id: str, limit: int = 100) -> list[MessageView]:
        with self.rt.db.transaction() as s:
            repo.get_agent(s, agent_id)
            return [MessageView.of(m) for m in repo.last_messages(s, agent_id, limit)]

    def memory(self, agent_id: str) -> list[BlockView]:
        with self.rt.db.transaction() as s:
            repo.get_agent(s, agent_id)
            return [BlockView.of(b) for b in repo.load_blocks(s, agent_id)]


def _upgrade_or_close(rt: Runtime) -> None:
    """Bring an embedded SQLite schema up to date (it needs no setup step)."""
    try:
        rt.db.upgrade()
    except BaseException:
        rt.close()
        raise
