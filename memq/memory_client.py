"""Recall and archival memory in the Python client (mixed into Client)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


class MemoryOps:
    """`memq archival ...`, `memq recall search`, `memq reindex` as methods; needs self.rt."""

    rt: Any

    def archival_insert(self, agent_id: str, text: str) -> dict[str, Any]:
        """Store a passage in the agent's archival memory (indexed right away when possible)."""
        from storage import repository as repo
        from storage.repository.errors import BadInput

        if not text.strip():
            raise BadInput("passage must not be empty")
        if len(text) > self.rt.settings.max_message_chars:
            raise BadInput(f"passage has {len(text)} characters; the limit is {self.rt.settings.max_message_chars}")
        with self.rt.db.transaction() as s:
            repo.get_agent(s, agent_id)
            rows = self.rt.memory.add_passages(s, agent_id, [text])
        indexed = self.rt.memory.index_passages(rows) if self.rt.memory.semantic else 0
        return {"passage_id": rows[0].id, "indexed": bool(indexed)}

    def archival_search(self, agent_id: str, query: str, page: int = 0) -> dict[str, Any]:
        self._check_agent(agent_id)
        return _page_doc(self.rt.memory.archival_search(agent_id, query, page))

    def recall_search(
        self, agent_id: str, query: str, page: int = 0, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, Any]:
        self._check_agent(agent_id)
        return _page_doc(self.rt.memory.recall_search(agent_id, query, page, start, end))

    def reindex(self, agent_id: str | None = None) -> dict[str, Any]:
        """Rebuild the vector index from Postgres (all agents or one)."""
        if agent_id is not None:
            self._check_agent(agent_id)
        if not self.rt.memory.semantic:
            from storage.repository.errors import BadInput

            raise BadInput("no embedding model is configured (MEMQ_EMBEDDING_MODEL): nothing to index")
        return {"reindexed": self.rt.memory.reindex(agent_id), "agent_id": agent_id}

    def _check_agent(self, agent_id: str) -> None:
        from storage import repository as repo

        with self.rt.db.autocommit() as s:  # one read: no transaction of its own needed
            if repo.agent_row(s, agent_id) is None:
                raise repo.AgentNotFound(agent_id)


def _page_doc(page: Any) -> dict[str, Any]:
    return {"results": page.items, "page": page.page, "pages": page.pages, "total": page.total, "notes": page.notes}
