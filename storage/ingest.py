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
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

MAX_CHUNK_CHARS = 1500
OVERLAP_CHARS = 150
MAX_FILE_BYTES = 50 * 1024 * 1024
_MAX_NAME_IN_HEADER = 200

KINDS = ("pdf", "markdown", "text", "code")

MARKDOWN_EXTS = {".md", ".markdown", ".mdown", ".mkd", ".mkdn", ".mdx"}
TEXT_EXTS = {".txt", ".text", ".rst", ".log", ".org", ".adoc", ".asciidoc", ".tex", ".csv", ".tsv"}
CODE_EXTS = {
    ".py", ".pyi", ".pyx", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts", ".go", ".rs",
    ".java", ".kt", ".kts", ".scala", ".groovy", ".c", ".h", ".cc", ".cpp", ".cxx", ".c++", ".hpp",
    ".hh", ".hxx", ".cs", ".fs", ".m", ".mm", ".swift", ".rb", ".php", ".pl", ".pm", ".lua", ".r",
    ".jl", ".ex", ".exs", ".erl", ".hrl", ".hs", ".ml", ".mli", ".clj", ".cljs", ".dart", ".zig",
    ".nim", ".v", ".vue", ".svelte", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".cmd",
    ".sql", ".proto", ".graphql", ".tf", ".hcl", ".css", ".scss", ".sass", ".less", ".html", ".htm",
    ".xml", ".json", ".jsonc", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".gradle",
    ".cmake", ".mk", ".dockerfile",
}
CODE_NAMES = {
    "makefile", "gnumakefile", "dockerfile", "containerfile", "cmakelists.txt", "rakefile", "gemfile",
    "jenkinsfile", "vagrantfile", "procfile", "justfile", "build", "workspace",
}

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CLOSER = re.compile(r"^(?:[})\]]|end\b|fi\b|done\b|esac\b|</)")


class IngestError(ValueError):
    """A file that cannot become passages; the message names it and says why."""


@dataclass
class Parsed:
    """One file, read and chunked."""

    name: str
    kind: str
    size_bytes: int
    chunks: list[str]


# -- reading ------------------------------------------------------------------


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


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 (or UTF-16/32 with a BOM), newlines normalised; anything else is not text."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError:
                raise IngestError(f"{name} is not a text file (bad {codec} despite its byte-order mark)") from None
            break
    else:
        if b"\x00" in data:
            raise IngestError(f"{name} is not a text file (it contains NUL bytes)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IngestError(f"{name} is not a text file (not UTF-8 at byte {exc.start})") from None
    if "\x00" in text:
        raise IngestError(f"{name} is not a text file (it contains NUL characters)")
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


# -- prose ----------------------------------------------------------------------


def _header_name(name: str) -> str:
    return name if len(name) <= _MAX_NAME_IN_HEADER else "…" + name[-(_MAX_NAME_IN_HEADER - 1):]


def _with_header(header: str, bodies: list[str]) -> list[str]:
    return [f"{header}\n{b}" for b in bodies if b.strip()]


def _budget(header: str, max_chars: int) -> int:
    return max_chars - len(header) - 1


def _cut_header(header: str, max_chars: int) -> str:
    """A header never takes more than a third of a chunk (a very long heading is cut)."""
    limit = max_chars // 3
    return header if len(header) <= limit else header[: limit - 1] + "…"


def split_long(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` characters: at line ends, then sentence ends, then spaces."""
    return [p for p in _split(text.strip(), limit, 0) if p.strip()]


_LEVELS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\n"), "\n"),
    (_SENTENCE_END, " "),
    (re.compile(r"[ \t]+"), " "),
)


def _split(text: str, limit: int, level: int) -> list[str]:
    if len(text) <= limit:
        return [text] if text.strip() else []
    if level >= len(_LEVELS):
        return [text[i : i + limit] for i in range(0, len(text), limit)]
    pattern, joiner = _LEVELS[level]
    parts = [p for p in pattern.split(text) if p.strip()]
    if len(parts) <= 1:
        return _split(text, limit, level + 1)
    out: list[str] = []
    cur = ""
    for part in parts:
        for piece in _split(part.strip(), limit, level + 1) if len(part) > limit else [part.strip()]:
            joined = f"{cur}{joiner}{piece}" if cur else piece
            if len(joined) <= limit:
                cur = joined
            else:
                if cur:
                    out.append(cur)
                cur = piece
    if cur:
        out.append(cur)
    return out


def _tail(text: str, n: int) -> str:
    """About the last ``n`` characters of ``text``, starting at a sentence or word start."""
    if n <= 0 or len(text) <= n:
        return ""
    cut = text[-n:]
    sentence = _SENTENCE_END.search(cut)
    if sentence and len(cut) - sentence.end() >= n // 3:
        return cut[sentence.end() :].strip()
    space = re.search(r"\s", cut)
    return cut[space.end() :].strip() if space else ""


def pack(units: list[str], budget: int, overlap: int, sep: str = "\n\n") -> list[str]:
    """Greedy packing of text units into bodies of at most ``budget`` characters.

    Each body after the first starts with the tail of the one before (``overlap``);
    a unit too long for a body (with room for the overlap) is split first.
    """
    unit_max = max(50, budget - overlap - len(sep))
    pieces: list[str] = []
    for unit in units:
        pieces += split_long(unit, unit_max) if len(unit) > unit_max else ([unit.strip()] if unit.strip() else [])
    bodies: list[str] = []
    cur: list[str] = []
    size = 0
    fresh = False  # does `cur` hold anything beyond the carried-over overlap?
    for piece in pieces:
        add = len(piece) + (len(sep) if cur else 0)
        if cur and size + add > budget:
            if fresh:
                bodies.append(sep.join(cur))
            tail = _tail(bodies[-1], overlap) if bodies else ""
            cur, size, fresh = ([tail], len(tail), False) if tail else ([], 0, False)
            add = len(piece) + (len(sep) if cur else 0)
            if size + add > budget:  # cannot happen with unit_max, but never overflow
                cur, size = [], 0
                add = len(piece)
        cur.append(piece)
        size += add
        fresh = True
    if cur and fresh:
        bodies.append(sep.join(cur))
    return bodies


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def chunk_text(text: str, name: str, *, max_chars: int = MAX_CHUNK_CHARS, overlap: int = OVERLAP_CHARS) -> list[str]:
    """Plain text: paragraphs packed into chunks headed by the file name."""
    header = _cut_header(_header_name(name), max_chars)
    return _with_header(header, pack(_paragraphs(text), _budget(header, max_chars), overlap))


# -- markdown -------------------------------------------------------------------


def _closes(m: re.Match[str] | None, fence: str) -> bool:
    return bool(m) and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)


def markdown_sections(text: str) -> list[tuple[list[str], list[str]]]:
    """(heading trail, body lines) per section; a fenced block's lines are never headings."""
    lines = text.split("\n")
    sections: list[tuple[list[str], list[str]]] = []
    trail: list[tuple[int, str]] = []
    body: list[str] = []
    fence: str | None = None

    def close() -> None:
        sections.append(([t for _, t in trail], body))

    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if fence is not None:
            body.append(line)
            if _closes(m, fence):
                fence = None
            i += 1
            continue
        if m:
            fence = m.group(1)
            body.append(line)
            i += 1
            continue
        atx = _ATX.match(line)
        setext = None
        if not atx and line.strip() and i + 1 < len(lines) and _SETEXT.match(lines[i + 1]) \
                and (i == 0 or not lines[i - 1].strip()) and not re.match(r"^ {0,3}([-*+>]|\d+[.)])\s", line):
            setext = 1 if lines[i + 1].strip()[0] == "=" else 2
        if atx or setext:
            level = len(atx.group(1)) if atx else setext
            title = (atx.group(2) or "").strip() if atx else line.strip()
            close()
            while trail and trail[-1][0] >= level:
                trail.pop()
            trail.append((level, title or "(untitled)"))
            body = []
            i += 1 if atx else 2
            continue
        body.append(line)
        i += 1
    close()
    return sections


def _md_blocks(lines: list[str]) -> list[str]:
    """Paragraphs, with each fenced code block kept whole (blank lines and all)."""
    blocks: list[str] = []
    cur: list[str] = []
    fence: str | None = None
    for line in lines:
        m = _FENCE.match(line)
        if fence is not None:
            cur.append(line)
            if _closes(m, fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            cur.append(line)
            continue
        if not line.strip():
            if cur:
                blocks.append("\n".join(cur))
                cur = []
            continue
        cur.append(line)
    if cur:
        blocks.append("\n".join(cur))
    return [b.strip("\n") for b in blocks if b.strip()]


def chunk_markdown(text: str, name: str, *, max_chars: int = MAX_CHUNK_CHARS,
                   overlap: int = OVERLAP_CHARS) -> list[str]:
    """Markdown: one or more chunks per section, headed ``name § A > B``."""
    chunks: list[str] = []
    base = _header_name(name)
    for trail, body in markdown_sections(text):
        blocks = _md_blocks(body)
        if not blocks:
            continue  # a heading with no text of its own lives on in its children's headers
        header = _cut_header(f"{base} § {' > '.join(trail)}" if trail else base, max_chars)
        chunks += _with_header(header, pack(blocks, _budget(header, max_chars), overlap))
    if not chunks:  # only headings: keep them as text
        return chunk_text(text, name, max_chars=max_chars, overlap=overlap)
    return chunks


# -- code -----------------------------------------------------------------------


def code_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) 0-based line index of each top-level block, blank edges trimmed."""
    starts: list[int] = []
    prev: int | None = None
    blank_since = False
    for i, line in enumerate(lines):
        if not line.strip():
            blank_since = True
            continue
        if prev is None:
            starts.append(i)
        elif line[0] not in " \t" and not _CLOSER.match(line):
            before = lines[prev]
            if blank_since or before[0] in " \t" or _CLOSER.match(before):
                starts.append(i)
        prev = i
        blank_since = False
    blocks = []
    for n, start in enumerate(starts):
        end = (starts[n + 1] if n + 1 < len(starts) else len(lines)) - 1
        while end > start and not lines[end].strip():
            end -= 1
        blocks.append((start, end))
    return blocks


@dataclass
class _Piece:
    first: int
    last: int
    text: str
    whole: bool  # whole lines (may merge with neighbours) or a slice of one long line


def _fit(lines: list[str], first: int, last: int, budget: int, inner: bool = True) -> list[_Piece]:
    """A block that may be too long: at its inner blank lines, then per line, then sliced."""
    text = "\n".join(lines[first : last + 1])
    if len(text) <= budget:
        return [_Piece(first, last, text, True)]
    if first == last:
        return [_Piece(first, first, text[i : i + budget], False) for i in range(0, len(text), budget)
                if text[i : i + budget].strip()]
    groups: list[tuple[int, int]] = []
    if inner:
        start = None
        for i in range(first, last + 1):
            if lines[i].strip():
                if start is None:
                    start = i
            elif start is not None:
                groups.append((start, i - 1))
                start = None
        if start is not None:
            groups.append((start, last))
    if len(groups) <= 1:
        groups = [(i, i) for i in range(first, last + 1) if lines[i].strip()]
        inner = False
    pieces: list[_Piece] = []
    for a, b in groups:
        pieces += _fit(lines, a, b, budget, inner=False)
    return _merge(lines, pieces, budget)


def _merge(lines: list[str], pieces: list[_Piece], budget: int) -> list[_Piece]:
    out: list[_Piece] = []
    for piece in pieces:
        if out and out[-1].whole and piece.whole:
            text = "\n".join(lines[out[-1].first : piece.last + 1])
            if len(text) <= budget:
                out[-1] = _Piece(out[-1].first, piece.last, text, True)
                continue
        out.append(piece)
    return out


def chunk_code(text: str, name: str, *, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """Source code: whole top-level blocks packed into chunks headed ``name:first-last``."""
    lines = text.split("\n")
    base = _cut_header(_header_name(name), max_chars)
    budget = max_chars - len(base) - 2 - 2 * len(str(len(lines))) - 1  # "name:first-last\n"
    pieces: list[_Piece] = []
    for first, last in code_blocks(lines):
        pieces += _fit(lines, first, last, budget)
    return [f"{base}:{p.first + 1}-{p.last + 1}\n{p.text}" for p in _merge(lines, pieces, budget) if p.text.strip()]


# -- pdf ------------------------------------------------------------------------


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
