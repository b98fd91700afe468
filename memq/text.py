"""The one rule for text memq stores: cleaned, never refused.

Text that cannot be stored as UTF-8 in Postgres (or SQLite) is replaced
character by character with U+FFFD (the replacement character):

- invalid UTF-8 (it reaches Python as a lone surrogate U+DC80..U+DCFF through
  the ``surrogateescape`` error handler, e.g. a command-line argument ``$'caf\\xe9'``),
- any other lone surrogate (U+D800..U+DFFF; a high surrogate directly followed by
  a low one is joined into the character the pair encodes),
- NUL (U+0000).

Each bad character becomes one U+FFFD, so positions stay valid.
``clean_text`` says what it replaced; ``stored_text`` (what the storage door
calls) also logs one warning line naming the first replacement and its
position, which the CLI prints on stderr.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("memq.text")

REPLACEMENT = "\ufffd"
_BAD = re.compile("[\x00\ud800-\udfff]")
_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
# JSON escapes that decode to a bad character: \u0000 and surrogates (a valid pair decodes fine).
_ESCAPED_BAD = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


@dataclass(frozen=True)
class Replaced:
    """What clean_text replaced: how many characters, the first one and where."""

    count: int
    first: str  # the first character replaced
    position: int  # its index in the text (0-based)

    @property
    def first_kind(self) -> str:
        code = ord(self.first)
        if code == 0:
            return "NUL"
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for one undecodable byte
            return f"invalid UTF-8 byte 0x{code - 0xDC00:02x}"
        return f"lone surrogate U+{code:04X}"

    def describe(self, what: str | None = None) -> str:
        """One line: ``replaced 1 invalid character (NUL at position 3) in persona with U+FFFD``."""
        plural = "" if self.count == 1 else "s"
        where = f" in {what}" if what else ""
        return (f"replaced {self.count} invalid character{plural} ({self.first_kind} at position "
                f"{self.position}){where} with U+FFFD")


def _join_pair(m: re.Match[str]) -> str:
    high, low = (ord(c) for c in m.group())
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def clean_text(text: str) -> tuple[str, Replaced | None]:
    """The text with every character that cannot be stored replaced by U+FFFD, and
    what was replaced (None when the text was clean: then it is returned as is)."""
    first = _BAD.search(text)
    if first is None:
        return text, None
    if _PAIR.search(text):
        text = _PAIR.sub(_join_pair, text)
        first = _BAD.search(text)
        if first is None:
            return text, None
    cleaned, count = _BAD.subn(REPLACEMENT, text)
    return cleaned, Replaced(count, first.group(), first.start())


def stored_text(text: str, what: str | None = None) -> str:
    """clean_text for a storage door: returns the clean text and logs a warning
    line when anything was replaced (``what`` names the field in that line)."""
    cleaned, replaced = clean_text(text)
    if replaced is not None:
        log.warning(replaced.describe(what))
    return cleaned


def stored_texts(texts: list[str], what: str) -> list[str]:
    """stored_text for many texts (a document's chunks): one warning line for them all."""
    out: list[str] = []
    total, first, first_no = 0, None, 0
    for no, text in enumerate(texts):
        cleaned, replaced = clean_text(text)
        out.append(cleaned)
        if replaced is not None:
            total += replaced.count
            if first is None:
                first, first_no = replaced, no
    if first is not None:
        log.warning(Replaced(total, first.first, first.position).describe(f"{what} {first_no + 1}"))
    return out


def stored_value(value: Any, what: str | None = None) -> Any:
    """stored_text applied to every string inside a JSON-like value (dicts, lists, keys too)."""
    if isinstance(value, str):
        return stored_text(value, what)
    if isinstance(value, dict):
        return {stored_value(k, what): stored_value(v, what) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [stored_value(v, what) for v in value]
    return value


def stored_arguments(raw: str, what: str | None = None) -> str:
    """A tool call's argument string (JSON text, perhaps malformed), cleaned: the text
    itself, and JSON escapes that would decode to a bad character (then the arguments
    are written again as JSON, with U+FFFD in their place)."""
    text = stored_text(raw, what)
    if not _ESCAPED_BAD.search(text):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    cleaned = stored_value(value, what)
    return text if cleaned == value else json.dumps(cleaned, ensure_ascii=False)
