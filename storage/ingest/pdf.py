"""PDF: the text of each page (pypdf), chunked as prose and headed ``name (page N)``."""

from __future__ import annotations

import io
import logging

from storage.ingest.common import (
    MAX_CHUNK_CHARS,
    OVERLAP_CHARS,
    IngestError,
    _budget,
    _cut_header,
    _header_name,
    _with_header,
)
from storage.ingest.text import _paragraphs, pack


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def pdf_pages(data: bytes, name: str) -> list[str]:
    """The text of each page (pypdf); an encrypted or unreadable PDF is an IngestError."""
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about repaired files are noise here
    try:
        import pypdf
    except ImportError:  # pragma: no cover - a dependency of memq
        raise IngestError(f"{name}: reading PDF files needs the pypdf package") from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on a damaged file
        raise IngestError(f"{name} is not a readable PDF ({_why(exc)})") from None
    if encrypted:
        try:
            opened = reader.decrypt("")
        except Exception as exc:  # noqa: BLE001 - e.g. AES without a crypto library
            raise IngestError(f"{name} is an encrypted PDF that cannot be opened ({_why(exc)})") from None
        if not opened:
            raise IngestError(f"{name} is an encrypted PDF (it needs a password)")
    try:
        pages = list(reader.pages)
    except Exception as exc:  # noqa: BLE001
        raise IngestError(f"{name} is not a readable PDF ({_why(exc)})") from None
    texts: list[str] = []
    first_error: BaseException | None = None
    for page in pages:
        try:
            texts.append((page.extract_text() or "").replace("\x00", ""))
        except Exception as exc:  # noqa: BLE001 - one damaged page must not lose the others
            first_error = first_error or exc
            texts.append("")
    if not any(t.strip() for t in texts):
        if first_error is not None:
            raise IngestError(f"{name} is not a readable PDF ({_why(first_error)})")
        if not pages:
            raise IngestError(f"{name} is a PDF without pages")
        raise IngestError(f"{name} has no extractable text (a scanned PDF needs OCR first)")
    return texts


def chunk_pdf(data: bytes, name: str, *, max_chars: int = MAX_CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> list[str]:
    """PDF: each page's paragraphs packed into chunks headed ``name (page N)``."""
    chunks: list[str] = []
    base = _header_name(name)
    for number, text in enumerate(pdf_pages(data, name), start=1):
        if not text.strip():
            continue
        header = _cut_header(f"{base} (page {number})", max_chars)
        chunks += _with_header(header, pack(_paragraphs(text), _budget(header, max_chars), overlap))
    return chunks
