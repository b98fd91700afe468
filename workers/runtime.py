"""Everything a step needs, built once per process and passed down."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from memq.settings import Settings
from storage import repository as repo
from storage.db import Database
from storage.embeddings import Embedder
from storage.memory import MemoryStore
from storage.vector.access import VectorAccess
from workers.base_tools import base_toolset
from workers.context import ContextBuilder
from workers.history import HistoryCache
from workers.llm import LLMClient
from workers.ratelimit import RateLimiter
from workers.run_events import RunEvents
from workers.summarizer import Summarizer
from workers.tokens import TokenCounter
from workers.tools import Toolset

log = logging.getLogger("memq.lease")


class LeaseKeeper:
    """Renews every lease this process holds, so a long LLM call keeps its agent.

    One thread per process renews all held leases every lease_s/3; when the
    process dies the renewals stop and the leases expire within lease_s.
    """

    def __init__(self, db: Database, lease_s: float) -> None:
        self.db = db
        self.lease_s = lease_s
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def hold(self, lease: repo.Lease) -> None:
        with self._lock:
            self._held[lease.agent_id] = lease.token
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="memq-lease-keeper", daemon=True)
                self._thread.start()

    def drop(self, lease: repo.Lease) -> None:
        with self._lock:
            if self._held.get(lease.agent_id) == lease.token:
                del self._held[lease.agent_id]

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                held = dict(self._held)
            if not held:
                continue
            try:
                with self.db.transaction() as s:
                    repo.renew_leases(s, held, lease_s=self.lease_s, now_s=time.time())
            except Exception:  # the database may be restarting; the next tick retries
                log.warning("lease renewal failed", exc_info=True)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Runtime:
    settings: Settings
    db: Database
    llm: LLMClient
    tools: Toolset
    memory: MemoryStore
    counter: TokenCounter
    context: ContextBuilder
    leases: LeaseKeeper
    worker_id: str
    history: HistoryCache = field(default_factory=HistoryCache)
    run_events: RunEvents = field(default_factory=lambda: RunEvents(None))  # after-commit notices

    @classmethod
    def build(cls, settings: Settings, *, pool_size: int = 10, serve_vectors: bool = False) -> "Runtime":
        """serve_vectors: a long-running worker that owns an embedded vector store
        answers other processes' vector operations."""
        db = Database(settings.resolved_database_url, pool_size=pool_size)
        limiter = RateLimiter(settings.llm_rpm, settings.llm_tpm, settings.resolved_redis_url)
        llm = LLMClient(settings, limiter if limiter.enabled else None)
        tools = base_toolset()
        counter = TokenCounter(settings.context_window)
        return cls(
            settings=settings,
            db=db,
            llm=llm,
            tools=tools,
            memory=MemoryStore(
                db,
                VectorAccess(settings, db, serve=serve_vectors),
                Embedder.from_settings(settings) if settings.embedding_model else None,
            ),
            counter=counter,
            context=ContextBuilder(settings, counter, Summarizer(llm, counter), tools.schemas),
            leases=LeaseKeeper(db, settings.lease_s),
            worker_id=f"{socket.gethostname()}:{os.getpid()}",
            history=HistoryCache(settings.history_cache_agents),
            run_events=RunEvents(settings.resolved_redis_url),
        )

    def warm_up(self) -> None:
        """Pay the one-time costs (the LLM route's client, or litellm's import for a provider that
        needs it; the tokenizer) before the first step."""
        model = self.settings.llm_model or "gpt-4o-mini"
        self.llm.warm_up(model)
        self.counter.text(model, "warm up")
        self.counter.tools(model, self.tools.schemas)
        self.counter.window(model)

    def close(self) -> None:
        self.leases.stop()
        self.llm.close()
        self.memory.vectors.close()
        self.run_events.close()
        self.db.dispose()
