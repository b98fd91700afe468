"""Provider limits shared through Redis: two workers' limiters draw on one budget."""

from __future__ import annotations

import time
import uuid

from workers.ratelimit import RateLimiter


def test_two_limiters_share_one_requests_per_minute_budget(redis_url):
    # given two workers' limiters for one model at 60 requests/minute (burst 60, 1/s after)
    model = f"model-{uuid.uuid4().hex[:6]}"
    first, second = RateLimiter(60, None, redis_url), RateLimiter(60, None, redis_url)
    # when they take turns asking for 63 calls
    started = time.monotonic()
    waits = [(first if i % 2 else second).acquire(model, 100) for i in range(63)]
    elapsed = time.monotonic() - started
    # then the first 60 went at once and the last 3 waited for the bucket to refill
    assert sum(waits[:60]) == 0
    assert all(w > 0 for w in waits[60:])
    assert elapsed >= 2.5


def test_tokens_per_minute_limit_holds_back_a_large_prompt(redis_url):
    model = f"model-{uuid.uuid4().hex[:6]}"
    limiter = RateLimiter(None, 60_000, redis_url)
    assert limiter.acquire(model, 59_000) == 0  # within the burst
    started = time.monotonic()
    waited = limiter.acquire(model, 2_500)  # needs ~1 500 more tokens: 1.5 s at 1 000/s
    assert waited > 0 and time.monotonic() - started >= 1.0


def test_without_limits_nothing_waits_and_without_redis_the_limit_is_local():
    assert RateLimiter(None, None, None).acquire("m", 10**9) == 0
    local = RateLimiter(60, None, None)
    waits = [local.acquire("m", 1) for _ in range(61)]
    assert sum(waits[:60]) == 0 and waits[60] > 0
