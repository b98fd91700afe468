"""Archival memory and the vector index's bookkeeping: documents, passages, index cursors and requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, BigId, utcnow


class Document(Base):
    """A file given to an agent; its text lives on as archival passages."""

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("agent_id", "content_sha256", name="uq_documents_agent_id_content_sha256"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(16))  # pdf | markdown | text | code
    # Of the extracted chunks: the same content given twice is stored once.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Passage(Base):
    """Archival memory: what the agent chose to store, and chunks of documents."""

    __tablename__ = "passages"
    __table_args__ = (Index("ix_passages_agent_id_id", "agent_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="agent")  # agent | document
    document_id: Mapped[str | None] = mapped_column(String(36))
    chunk_no: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[Any] | None] = mapped_column(JSON)
    indexed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IndexCursor(Base):
    """How far the background indexer has embedded a table (rows with id <= last_id)."""

    __tablename__ = "index_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)


class VectorRequest(Base):
    """A vector-store operation handed to the process that holds the embedded store."""

    __tablename__ = "vector_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    op: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
