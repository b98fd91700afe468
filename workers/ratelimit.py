"""Provider limits shared by every worker: requests and tokens per minute, per model.

Two token buckets per model live in Redis and are checked and charged together
by one Lua script (Redis's clock, so workers' clocks do not matter). A step
that would exceed a limit waits for the bucket to refill instead of sending a
request the provider would answer with 429. Without Redis (embedded mode) the
buckets live in the process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from memq.constants import RATE_KEY_PREFIX

_LUA = """
local now = redis.call('TIME')
local now_s = tonumber(now[1]) + tonumber(now[2]) / 1e6
local wait = 0
local state = {}
for i = 1, 2 do
  local cap, cost = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  if cap > 0 then
    local b = redis.call('HMGET', KEYS[i], 'level', 'ts')
    local level = tonumber(b[1]) or cap
    local ts = tonumber(b[2]) or now_s
    level = math.min(cap, level + (now_s - ts) * cap / 60.0)
    if cost > cap then cost = cap end
    if level < cost then
      wait = math.max(wait, (cost - level) * 60.0 / cap)
    end
    state[i] = {level, cost}
  end
end
if wait > 0 then return tostring(wait) end
for i = 1, 2 do
  if state[i] then
    redis.call('HSET', KEYS[i], 'level', state[i][1] - state[i][2], 'ts', now_s)
    redis.call('EXPIRE', KEYS[i], 120)
  end
end
return '0'
"""


class RateLimiter:
    """Blocks until the model's request and token budgets allow one more call."""

    def __init__(self, rpm: int | None, tpm: int | None, redis_url: str | None, max_wait_s: float = 300.0) -> None:
        self.rpm = rpm or 0
        self.tpm = tpm or 0
        self.max_wait_s = max_wait_s
        self._redis_url = redis_url
        self._script: Any = None
        self._local: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.rpm or self.tpm)

    def acquire(self, model: str, tokens: int) -> float:
        """Wait until allowed; returns the seconds waited."""
        if not self.enabled:
            return 0.0
        waited = 0.0
        while True:
            wait = self._try(model, tokens)
            if wait <= 0:
                return waited
            if waited >= self.max_wait_s:
                return waited  # let the provider decide rather than hang forever
            time.sleep(min(wait, 5.0))
            waited += min(wait, 5.0)

    def _try(self, model: str, tokens: int) -> float:
        if self._redis_url:
            if self._script is None:
                import redis

                client = redis.Redis.from_url(self._redis_url, socket_timeout=5, socket_connect_timeout=5)
                self._script = client.register_script(_LUA)
            keys = [f"{RATE_KEY_PREFIX}{model}:requests", f"{RATE_KEY_PREFIX}{model}:tokens"]
            return float(self._script(keys=keys, args=[self.rpm, 1, self.tpm, tokens]))
        return self._try_local(model, tokens)

    def _try_local(self, model: str, tokens: int) -> float:
        now = time.monotonic()
        with self._lock:
            wait, updates = 0.0, {}
            for name, cap, cost in (("r", self.rpm, 1), ("t", self.tpm, tokens)):
                if not cap:
                    continue
                level, ts = self._local.get(model + name, (float(cap), now))
                level = min(cap, level + (now - ts) * cap / 60.0)
                cost = min(cost, cap)
                if level < cost:
                    wait = max(wait, (cost - level) * 60.0 / cap)
                updates[model + name] = (level - cost, now)
            if wait == 0:
                self._local.update(updates)
            return wait
