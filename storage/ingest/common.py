"""What every kind shares: limits, file kinds, the error, the result, decoding and chunk headers."""

from __future__ import annotations

import re
from dataclasses import dataclass

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


class IngestError(ValueError):
    """A file that cannot become passages; the message names it and says why."""


@dataclass
class Parsed:
    """One file, read and chunked."""

    name: str
    kind: str
    size_bytes: int
    chunks: list[str]


# More NUL or non-UTF-8 characters than this share of a file make it binary; fewer are replaced by U+FFFD when stored (memq.text).
BINARY_RATIO = 0.01
_BAD_CHARS = re.compile("[\x00\udc80-\udcff]")


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
        # Bytes that are not UTF-8 come through as lone surrogates: stray ones (and stray
        # NULs) are text to clean (U+FFFD, at the storage door); many make a binary file.
        text = data.decode("utf-8", errors="surrogateescape")
    bad = len(_BAD_CHARS.findall(text))
    if bad > len(text) * BINARY_RATIO:
        first = _BAD_CHARS.search(text)
        raise IngestError(f"{name} is not a text file ({bad} of its {len(text)} characters are NUL or not "
                          f"UTF-8, the first at position {first.start() if first else 0})")
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


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
