"""A lost wake-up the chaos run found (README: "Findings"): the LeaseKeeper's renewal
can land after the step released its lease, and then re-extends the released lease.

LeaseKeeper._loop copies the held leases, then renews them in a transaction; if the
step drops and releases its lease in between, the renewal (same token, WHERE only
checks the token) sets lease_until_s = now + lease_s again. For that long every
doorbell bounces off a lease nobody holds, the step's own re-ring after the release
is one of them, and the reconciler skips the agent (its lease looks live): the work
waits lease_s + reconcile_idle_s (+ a reconcile tick) instead of milliseconds.

Fixed: renew_leases only renews a lease that still has an owner (release clears it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from storage import repository as repo  # noqa: E402
from storage.db import Database  # noqa: E402


@pytest.fixture
def db(tmp_path):
    d = Database(f"sqlite:///{tmp_path / 'lease.db'}")
    d.upgrade()
    yield d
    d.dispose()


def test_a_renewal_after_the_release_does_not_resurrect_the_lease(db):
    with db.transaction() as s:
        agent_id = repo.create_agent(s, name="a", blocks={"persona": "p"}, limit_chars=100).id
    with db.transaction() as s:
        lease = repo.acquire_lease(s, agent_id, owner="w1", lease_s=5, now_s=time.time())
    held = {agent_id: lease.token}  # the keeper's snapshot, taken while the step ran
    with db.transaction() as s:  # the step ends: drop + release
        repo.release_lease(s, lease, now_s=time.time())
    with db.transaction() as s:  # the keeper's renewal commits after the release
        repo.renew_leases(s, held, lease_s=5, now_s=time.time())
    with db.transaction() as s:
        repo.enqueue_message(s, agent_id, "hello", max_chars=100)
    with db.transaction() as s:
        # the next doorbell must be able to take the lease at once
        assert repo.acquire_lease(s, agent_id, owner="w2", lease_s=5, now_s=time.time()) is not None
