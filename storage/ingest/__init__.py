"""Documents into archival passages: read a file, tell its kind, cut it into chunks.

Kinds:

- ``pdf``: the text of each page (pypdf), chunked as prose, each chunk headed
  ``name (page N)``. An encrypted PDF that needs a password, or one pypdf cannot
  read, is an :class:`IngestError` that names the file and says why.
- ``markdown``: split at headings (ATX ``#`` and setext), then paragraphs; each
  chunk is headed ``name § Heading > Subheading`` so it keeps its place. Fenced
  code blocks are never split at their blank lines or read as headings.
- ``code`` (by extension or file name, or a ``#!`` first line): split at
  top-level definitions / blank-line blocks (a line at column 0 after a blank
  line or after an indented or closing line starts a block; comments and
  decorators stay with what follows them); whole blocks are packed into
  chunks, each headed ``name:first-last`` (1-based line numbers).
- ``text`` (and any other decodable file): paragraphs.

Every chunk, header included, is at most ``max_chars`` (default 1 500)
characters and never empty; prose chunks (text, markdown, pdf) overlap their
predecessor by about ``overlap`` characters, cut at a sentence or word start.
A file with NUL bytes or that is not UTF-8 (or UTF-16/32 with a BOM) is "not a
text file"; an empty file is an error too. Nothing here touches the database.

The package, one module per job: ``common`` (limits, kinds, the error and the
result, decoding, chunk headers), ``parse`` (reading a file and telling its
kind), ``text`` (splitting and packing prose), ``markdown``, ``code`` and ``pdf``.
Everything public is re-exported here.
"""

from __future__ import annotations

from storage.ingest.code import chunk_code, code_blocks
from storage.ingest.common import (
    CODE_EXTS,
    CODE_NAMES,
    KINDS,
    MARKDOWN_EXTS,
    MAX_CHUNK_CHARS,
    MAX_FILE_BYTES,
    OVERLAP_CHARS,
    TEXT_EXTS,
    IngestError,
    Parsed,
    decode_text,
)
from storage.ingest.markdown import chunk_markdown, markdown_sections
from storage.ingest.parse import detect_kind, parse_bytes, parse_file
from storage.ingest.pdf import chunk_pdf, pdf_pages
from storage.ingest.text import chunk_text, pack, split_long

__all__ = [
    "CODE_EXTS",
    "CODE_NAMES",
    "KINDS",
    "MARKDOWN_EXTS",
    "MAX_CHUNK_CHARS",
    "MAX_FILE_BYTES",
    "OVERLAP_CHARS",
    "TEXT_EXTS",
    "IngestError",
    "Parsed",
    "chunk_code",
    "chunk_markdown",
    "chunk_pdf",
    "chunk_text",
    "code_blocks",
    "decode_text",
    "detect_kind",
    "markdown_sections",
    "pack",
    "parse_bytes",
    "parse_file",
    "pdf_pages",
    "split_long",
]
