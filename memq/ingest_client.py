"""Document ingestion in the Python client (mixed into Client): files into archival memory."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("memq.ingest")

INDEX_BATCH = 64  # passages embedded and upserted per call after the commit

Progress = Callable[[int, int, str], None]


class IngestOps:
    """`memq ingest` as a method; needs self.rt."""

    rt: Any

    def ingest(self, agent_id: str, paths: Iterable[str | Path], progress: Progress | None = None) -> dict[str, Any]:
        """Store each file as a Document and its chunks as archival passages.

        Files are independent: each is parsed, then committed in its own
        transaction (the Document row and all its passages, or nothing), then
        indexed. A file that cannot be read or stored is reported in its entry's
        ``error`` and does not stop the others. An indexing failure after the
        commit is not a failure: the passages are stored, searchable by words, and
        the background indexer embeds them later (``indexed`` false, ``note`` says so).

        ``progress(done_chunks, total_chunks, path)`` is called as chunks are stored
        and indexed (the total counts the chunks of every readable file).
        """
        from storage import repository as repo
        from storage.ingest import IngestError, Parsed, parse_file

        with self.rt.db.transaction() as s:
            repo.get_agent(s, agent_id)  # NotFound before anything is read or written

        if isinstance(paths, (str, Path)):
            paths = [paths]
        ordered: list[str] = []
        for p in paths:
            if str(p) not in ordered:
                ordered.append(str(p))

        entries: list[dict[str, Any]] = []
        parsed: dict[int, Parsed] = {}
        for i, path in enumerate(ordered):
            entry = {"path": path, "document_id": None, "kind": None, "chunks": 0, "indexed": False,
                     "error": None, "note": None}
            entries.append(entry)
            try:
                doc = parse_file(path)
            except IngestError as exc:
                entry["error"] = str(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a parser bug on one file must not stop the others
                log.warning("reading %s failed", path, exc_info=True)
                entry["error"] = f"{path}: could not be read ({type(exc).__name__}: {exc})"
                continue
            entry["kind"] = doc.kind
            parsed[i] = doc

        total = sum(len(d.chunks) for d in parsed.values())
        done = 0

        def tick(path: str) -> None:
            if progress is not None:
                progress(done, total, path)

        for i, doc in parsed.items():
            entry = entries[i]
            tick(entry["path"])
            try:
                existing, rows = self._store_document(agent_id, doc)
            except Exception as exc:  # noqa: BLE001 - e.g. the agent deleted meanwhile, a database error
                log.warning("storing %s failed", entry["path"], exc_info=True)
                entry["error"] = f"{entry['path']}: could not be stored ({_one_line(exc)})"
                done += len(doc.chunks)
                tick(entry["path"])
                continue
            if existing is not None:
                entry.update(document_id=existing.id, chunks=existing.chunks, indexed=True,
                             note=f"already ingested as document {existing.id}: nothing added")
                done += len(doc.chunks)
                tick(entry["path"])
                continue
            entry.update(document_id=rows[0].document_id, chunks=len(rows))
            indexed = 0
            if self.rt.memory.semantic:
                for start in range(0, len(rows), INDEX_BATCH):
                    batch = rows[start : start + INDEX_BATCH]
                    try:
                        indexed += self.rt.memory.index_passages(batch)
                    except Exception as exc:  # noqa: BLE001 - stored; the background indexer retries
                        log.info("indexing %s failed; the background indexer will retry", entry["path"],
                                 exc_info=True)
                        entry["note"] = f"indexed later (indexing failed now: {_one_line(exc)})"
                        break
                    done += len(batch)
                    tick(entry["path"])
            else:
                entry["note"] = "no embedding model is configured: found by words, not meaning"
            entry["indexed"] = indexed == len(rows)
            done += len(rows) - indexed  # the rest, stored but not (yet) indexed
            tick(entry["path"])

        failed = sum(1 for e in entries if e["error"])
        return {"agent_id": agent_id, "documents": entries, "ok": len(entries) - failed, "failed": failed}

    def _store_document(self, agent_id: str, doc: Any) -> tuple[Any, list[Any]]:
        """One transaction: the Document row and every passage of it.

        Returns (the document already holding this content, []) when the agent
        was given the same content before: ingesting twice adds nothing.
        """
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError

        from storage.models import Document

        from memq.text import stored_text, stored_texts

        chunks = stored_texts(doc.chunks, f"{doc.name}, chunk")  # U+FFFD for what cannot be stored
        digest = hashlib.sha256("\x00".join([doc.kind, *chunks]).encode()).hexdigest()
        find = select(Document).where(Document.agent_id == agent_id, Document.content_sha256 == digest)
        try:
            with self.rt.db.transaction() as s:
                existing = s.scalars(find).first()
                if existing is not None:
                    return existing, []
                row = Document(id=str(uuid.uuid4()), agent_id=agent_id, name=stored_text(doc.name[:500], "file name"),
                               kind=doc.kind, size_bytes=doc.size_bytes, chunks=len(chunks), content_sha256=digest)
                s.add(row)
                s.flush()
                return None, self.rt.memory.add_passages(s, agent_id, chunks, source="document",
                                                         document_id=row.id)
        except IntegrityError:  # the same content ingested at this moment by another command
            with self.rt.db.transaction() as s:
                return s.scalars(find).one(), []


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
