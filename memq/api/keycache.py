"""API keys looked up once per `MEMQ_API_KEY_CACHE_S` (5 s) per process: a request
with a key seen recently costs no database round trip and no threadpool hop.
A revoked key stops working within that time (tests/api/test_api_ops.py); a key
that is not found is cached for the same time, so a flood of bad keys costs
one lookup each per period."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

MAX_KEYS = 10_000  # cached keys per process; the oldest go first


class KeyCache:
    def __init__(self, look_up: Callable[[str], str | None], ttl_s: float) -> None:
        self._look_up = look_up
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, str | None]] = {}  # sha256 of the key -> (expires, tenant)

    @staticmethod
    def _digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()  # the key itself is never kept

    def cached(self, key: str) -> tuple[bool, str | None]:
        """(True, tenant or None) when the key's answer is fresh; (False, None) when it must be looked up."""
        entry = self._entries.get(self._digest(key))
        if entry is None or entry[0] <= time.monotonic():
            return False, None
        return True, entry[1]

    def look_up(self, key: str) -> str | None:
        """The key's tenant (None: unknown or revoked), from the database; remembered for ttl_s."""
        tenant = self._look_up(key)
        if self.ttl_s > 0:
            if len(self._entries) >= MAX_KEYS:
                self._entries.pop(next(iter(self._entries)))
            self._entries[self._digest(key)] = (time.monotonic() + self.ttl_s, tenant)
        return tenant
