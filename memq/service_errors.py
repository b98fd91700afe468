"""What to say when a server memq needs does not answer (the broker, Postgres).

Standard library only: the quick CLI path and the full client both use it.
"""

from __future__ import annotations

from memq.logging_setup import URL_PASSWORD

_REFUSED = ("connection refused", "errno 111", "errno 61")


def reason(exc: BaseException) -> str:
    """'connection refused' for the several ways drivers say it, else the first line."""
    text = " ".join(str(exc).split())
    if any(s in text.lower() for s in _REFUSED):
        return "connection refused"
    return text[:200] or "no answer"


def broker_down(broker_url: str | None, exc: BaseException) -> str:
    url = URL_PASSWORD.sub(lambda m: m.group("head") + "***@", broker_url or "") or "the broker"
    return f"cannot connect to the broker at {url} ({reason(exc)})"


def doorbell_not_delivered(broker_url: str | None, exc: BaseException, agent_id: str) -> str:
    """The warning of a send whose message is saved but whose doorbell could not ring."""
    return (f"{broker_down(broker_url, exc)}: the message is saved and runs once the broker is back "
            f"(a worker's reconciler rings agent {agent_id})")


def send_not_answered(exc: BaseException, idempotency_key: str | None) -> str:
    """The error of a send whose database did not answer in time (its commit may have happened)."""
    first = str(exc).splitlines()[0] if str(exc) else "Postgres did not answer"
    if idempotency_key is not None:
        return (f"{first}; the message may or may not be saved: sending it again with the same "
                f"idempotency key ({idempotency_key}) is safe, it answers with the one run")
    return (f"{first}; the message may or may not be saved: a send repeated without an idempotency key "
            "could queue it twice (check the agent's messages, or send with an idempotency key)")
