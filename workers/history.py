"""A process's copies of agents' in-context messages, so a step re-reads only what is new.

Messages are append-only: a committed row never changes. Which messages are in an
agent's context is still read from the database on every step (the context
cursor and the ids from it on); only the text of rows this process has already
read is taken from here. Per agent, rows become visible in id order (their
inserts run in fenced step commits, one after the other), so "every row up to
the highest cached id" is known and the query asks for the text of newer rows only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

# Loads the agent's context rows; rows with id <= known_through may come without text.
Loader = Callable[[int], Sequence[Any]]


class HistoryCache:
    """In-context messages per agent, least recently used agents dropped first."""

    def __init__(self, max_agents: int = 256) -> None:
        self.max_agents = max_agents
        self._agents: OrderedDict[str, dict[int, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0  # rows served from here (for benchmarks and tests)

    def load(self, agent_id: str, start_id: int, loader: Loader) -> list[Any]:
        """The agent's messages from start_id on, oldest first, as full rows."""
        if self.max_agents <= 0:
            return list(loader(0))
        with self._lock:
            cached = self._agents.get(agent_id) or {}
        known = max(cached) if cached else 0
        rows = loader(known)
        out, hits = [], 0
        for row in rows:
            if row.id > known:
                out.append(row)
                continue
            full = cached.get(row.id)
            if full is None:  # a row this process never read: read everything once
                return self._store(agent_id, list(loader(0)))
            out.append(full)
            hits += 1
        self.hits += hits
        return self._store(agent_id, out)

    def _store(self, agent_id: str, rows: list[Any]) -> list[Any]:
        with self._lock:
            self._agents[agent_id] = {r.id: r for r in rows}  # rows before the cursor drop out
            self._agents.move_to_end(agent_id)
            while len(self._agents) > self.max_agents:
                self._agents.popitem(last=False)
        return rows

    def forget(self, agent_id: str) -> None:
        with self._lock:
            self._agents.pop(agent_id, None)
