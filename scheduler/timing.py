"""Schedule arithmetic: parsing specs and computing fire instants (pure functions).

Cron expressions are evaluated in the schedule's time zone by croniter, so DST
changes land right: a wall-clock time skipped by a spring-forward fires at the
first valid instant after it, and instants are stored in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storage.repository.errors import BadInput


class ScheduleError(BadInput):
    """A schedule that cannot be created as asked."""


class ScheduleKind(StrEnum):
    CRON = "cron"
    EVERY = "every"
    AT = "at"


class MissedPolicy(StrEnum):
    """What a beat does with fires it missed while it was down."""

    COALESCE = "coalesce"  # one catch-up fire for the latest missed instant
    SKIP = "skip"  # none; go on with the next instant
    ALL = "all"  # every missed instant (at most MAX_CATCHUP)


MAX_CATCHUP = 100
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Spec:
    kind: ScheduleKind
    expr: str  # cron expression | interval seconds | ISO instant (UTC)
    tz: str


def parse_duration_s(text: str) -> float:
    """'90s', '5m', '1h30m', '2d' -> seconds (> 0). A bare number is refused: 5 what?"""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        raise ScheduleError(f"--every {text}: add a unit, e.g. {text}s, {text}m, {text}h")
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise ScheduleError(f"invalid duration '{text}': use e.g. 30s, 5m, 1h30m, 2d")
    seconds = sum(float(n) * _UNIT_S[u.lower()] for n, u in parts)
    if seconds <= 0:
        raise ScheduleError(f"duration must be positive: '{text}'")
    return seconds


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone '{name}' (use an IANA name like Europe/Berlin)") from None


def make_spec(
    *, cron: str | None = None, every: str | None = None, at: str | None = None, tz: str = "UTC", now: datetime
) -> Spec:
    """Validate exactly one of cron / every / at; raises ScheduleError with the reason."""
    given = [x for x in (cron, every, at) if x is not None]
    if len(given) != 1:
        raise ScheduleError("give exactly one of --cron, --every, --at")
    tzinfo = zone(tz)
    if cron is not None:
        from croniter import croniter

        if not croniter.is_valid(cron):
            raise ScheduleError(f"invalid cron expression '{cron}'")
        return Spec(ScheduleKind.CRON, cron.strip(), tz)
    if every is not None:
        return Spec(ScheduleKind.EVERY, repr(parse_duration_s(every)), tz)
    assert at is not None
    try:
        instant = datetime.fromisoformat(at.strip())
    except ValueError:
        raise ScheduleError(f"invalid time '{at}': use ISO 8601, e.g. 2026-12-01T09:00 or 2026-12-01T09:00+01:00") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=tzinfo)
    instant = instant.astimezone(timezone.utc)
    if instant <= now:
        raise ScheduleError(f"time {at} is in the past")
    return Spec(ScheduleKind.AT, instant.isoformat(), tz)


def next_after(spec: Spec, instant: datetime) -> datetime | None:
    """The first fire strictly after `instant` (UTC), or None when there is none."""
    if spec.kind is ScheduleKind.AT:
        at = datetime.fromisoformat(spec.expr)
        return at if at > instant else None
    if spec.kind is ScheduleKind.EVERY:
        return instant + timedelta(seconds=float(spec.expr))
    from croniter import croniter

    local = instant.astimezone(zone(spec.tz))
    nxt = croniter(spec.expr, local).get_next(datetime)
    return nxt.astimezone(timezone.utc)


def _latest_at_or_before(spec: Spec, anchor: datetime, now: datetime) -> datetime:
    if spec.kind is ScheduleKind.EVERY:
        step = timedelta(seconds=float(spec.expr))
        return anchor + step * int((now - anchor) / step)
    if spec.kind is ScheduleKind.CRON:
        from croniter import croniter

        local = (now + timedelta(microseconds=1)).astimezone(zone(spec.tz))
        return croniter(spec.expr, local).get_prev(datetime).astimezone(timezone.utc)
    return anchor


def first_fire(spec: Spec, now: datetime) -> datetime | None:
    return next_after(spec, now)


def due_fires(
    spec: Spec, next_fire_at: datetime, now: datetime, policy: MissedPolicy, grace_s: float
) -> tuple[list[datetime], datetime | None]:
    """Instants to fire now and the next one after them.

    An instant is missed when it is older than grace_s: a beat that is merely a
    tick late fires the latest instant under every policy.
    """
    due: list[datetime] = []
    t: datetime | None = next_fire_at
    while t is not None and t <= now:
        due.append(t)
        if len(due) >= 10 * MAX_CATCHUP:
            # An outage far longer than the interval: jump to the latest due
            # instant instead of walking every one of them.
            latest = _latest_at_or_before(spec, due[-1], now)
            if latest > due[-1]:
                due.append(latest)
            t = next_after(spec, latest)
            break
        t = next_after(spec, t)
    if not due:
        return [], next_fire_at
    latest_on_time = (now - due[-1]).total_seconds() <= grace_s
    if policy is MissedPolicy.ALL:
        fire = due[-MAX_CATCHUP:]
    elif policy is MissedPolicy.SKIP:
        fire = [due[-1]] if latest_on_time else []
    else:
        fire = [due[-1]]
    return fire, t
