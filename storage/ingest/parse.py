"""Reading a file: check it, tell its kind, hand it to that kind's chunker."""

from __future__ import annotations

from pathlib import Path

from storage.ingest.code import chunk_code
from storage.ingest.common import (
    CODE_EXTS,
    CODE_NAMES,
    MARKDOWN_EXTS,
    MAX_CHUNK_CHARS,
    MAX_FILE_BYTES,
    OVERLAP_CHARS,
    TEXT_EXTS,
    IngestError,
    Parsed,
    decode_text,
)
from storage.ingest.markdown import chunk_markdown
from storage.ingest.pdf import chunk_pdf
from storage.ingest.text import chunk_text


def parse_file(path: str | Path, *, name: str | None = None, max_chars: int = MAX_CHUNK_CHARS,
               overlap: int = OVERLAP_CHARS) -> Parsed:
    """Read ``path`` and chunk it; every problem is an IngestError naming the file."""
    p = Path(path)
    name = name or str(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise IngestError(f"{name}: no such file") from None
    except OSError as exc:
        raise IngestError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    if p.is_dir():
        raise IngestError(f"{name} is a directory, not a file")
    if not p.is_file():
        raise IngestError(f"{name} is not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise IngestError(f"{name} is {st.st_size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise IngestError(f"{name}: cannot be read ({exc.strerror or exc})") from None
    return parse_bytes(data, name, max_chars=max_chars, overlap=overlap)


def parse_bytes(data: bytes, name: str, *, max_chars: int = MAX_CHUNK_CHARS,
                overlap: int = OVERLAP_CHARS) -> Parsed:
    """Chunk a file's bytes; ``name`` decides the kind by extension and heads the chunks."""
    if max_chars < 200:
        raise ValueError("max_chars must be at least 200")
    overlap = max(0, min(overlap, max_chars // 4))
    if not data:
        raise IngestError(f"{name} is empty")
    kind = detect_kind(name, data)
    if kind == "pdf":
        chunks = chunk_pdf(data, name, max_chars=max_chars, overlap=overlap)
    else:
        text = decode_text(data, name)
        if not text.strip():
            raise IngestError(f"{name} is empty (only whitespace)")
        if kind == "markdown":
            chunks = chunk_markdown(text, name, max_chars=max_chars, overlap=overlap)
        elif kind == "code":
            chunks = chunk_code(text, name, max_chars=max_chars)
        else:
            chunks = chunk_text(text, name, max_chars=max_chars, overlap=overlap)
    chunks = [c for c in chunks if c.strip()]
    if not chunks:
        raise IngestError(f"{name} has no text")
    return Parsed(name=name, kind=kind, size_bytes=len(data), chunks=chunks)


def detect_kind(name: str, data: bytes = b"") -> str:
    """pdf | markdown | code | text, by extension or file name (a PDF also by its magic bytes)."""
    base = Path(name).name.lower()
    ext = Path(base).suffix
    if ext == ".pdf" or data[:5] == b"%PDF-":
        return "pdf"
    if ext in MARKDOWN_EXTS:
        return "markdown"
    if ext in CODE_EXTS or base in CODE_NAMES:
        return "code"
    if ext in TEXT_EXTS:
        return "text"
    if data[:2] == b"#!":
        return "code"
    return "text"
