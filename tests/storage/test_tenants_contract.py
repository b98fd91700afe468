"""Tenants, API keys and tenant-scoped lookups, on SQLite and Postgres (given / when / then)."""

from __future__ import annotations

import pytest

from storage.models import ApiKey, DEFAULT_TENANT
from storage.repository import AgentNotFound, NotFound, create_agent, enqueue_message, get_agent, get_run, list_agents
from storage.repository.errors import BadInput
from storage.repository.pages import cancel_queued_runs, message_page, run_page
from storage.repository.tenants import create_key, list_keys, revoke_key, tenant_for_key


def _agent(s, name: str, tenant: str = DEFAULT_TENANT):
    return create_agent(s, name=name, blocks={"human": ""}, limit_chars=100, tenant_id=tenant)


def test_a_key_names_its_tenant_until_it_is_revoked_and_only_its_hash_is_stored(db):
    # given a key created for tenant acme
    with db.transaction() as s:
        row, text = create_key(s, "acme", name="ci")
    # then the key finds its tenant, and the stored row holds no key text
    with db.transaction() as s:
        assert tenant_for_key(s, text) == "acme"
        stored = s.get(ApiKey, row.id)
        assert text not in (stored.key_sha256, stored.prefix) and text.startswith(stored.prefix)
        assert tenant_for_key(s, text + "x") is None and tenant_for_key(s, "nonsense") is None
    # when it is revoked by its displayed prefix
    with db.transaction() as s:
        revoke_key(s, row.prefix)
    # then it names nothing, and the listing shows it revoked
    with db.transaction() as s:
        assert tenant_for_key(s, text) is None
        assert [k.revoked_at is not None for k in list_keys(s, "acme")] == [True]


def test_bad_tenant_names_and_unknown_keys_are_clear_errors(db):
    with db.transaction() as s:
        with pytest.raises(BadInput, match="bad tenant name"):
            create_key(s, "Acme Corp")
    with db.transaction() as s:
        with pytest.raises(NotFound, match="unknown key"):
            revoke_key(s, "memq_nothing")


def test_another_tenants_agent_and_run_are_as_unknown_as_missing_ones(db):
    # given an agent and a run of tenant a
    with db.transaction() as s:
        create_key(s, "a")
        create_key(s, "b")
        agent = _agent(s, "ada", "a")
        run, _ = enqueue_message(s, agent.id, "hi", max_chars=100)
    with db.transaction() as s:
        # then tenant a finds both, tenant b finds neither, with the unknown-id error
        assert get_agent(s, agent.id, tenant_id="a").id == agent.id
        assert get_run(s, run.id, tenant_id="a").id == run.id
        with pytest.raises(AgentNotFound, match=f"unknown agent: {agent.id}"):
            get_agent(s, agent.id, tenant_id="b")
        with pytest.raises(NotFound, match=f"unknown run: {run.id}"):
            get_run(s, run.id, tenant_id="b")
        assert [a.id for a in list_agents(s, tenant_id="b")] == []
        assert run_page(s, "b") == [] and [r.id for r in run_page(s, "a")] == [run.id]
        with pytest.raises(NotFound):
            run_page(s, "b", after=run.id)


def test_agents_made_without_a_tenant_belong_to_default(db):
    with db.transaction() as s:
        agent = create_agent(s, name="cli", blocks={}, limit_chars=10)
    with db.transaction() as s:
        assert get_agent(s, agent.id, tenant_id=DEFAULT_TENANT).tenant_id == DEFAULT_TENANT


def test_run_pages_follow_cursors_in_both_orders(db):
    # given five runs of one agent
    with db.transaction() as s:
        agent = _agent(s, "ada")
        ids = [enqueue_message(s, agent.id, f"m{i}", max_chars=100)[0].id for i in range(5)]
    with db.transaction() as s:
        # then pages of two walk them oldest first and newest first
        asc = [r.id for r in run_page(s, DEFAULT_TENANT, limit=2, descending=False)]
        asc += [r.id for r in run_page(s, DEFAULT_TENANT, limit=2, descending=False, after=asc[-1])]
        assert asc == ids[:4]
        desc = [r.id for r in run_page(s, DEFAULT_TENANT, limit=2, after=ids[2])]
        assert desc == [ids[1], ids[0]]
        assert [r.id for r in run_page(s, DEFAULT_TENANT, statuses=["done"])] == []


def test_message_pages_and_cancelling_queued_runs(db):
    # given two queued runs
    with db.transaction() as s:
        agent = _agent(s, "ada")
        first, _ = enqueue_message(s, agent.id, "one", max_chars=100)
        second, _ = enqueue_message(s, agent.id, "two", max_chars=100)
    # when the second is cancelled by id
    with db.transaction() as s:
        assert cancel_queued_runs(s, agent.id, [second.id]) == [second.id]
    # then it is cancelled, the first still queued, and nothing else cancels twice
    with db.transaction() as s:
        assert get_run(s, second.id).status == "cancelled"
        assert get_run(s, first.id).status == "queued"
        assert cancel_queued_runs(s, agent.id, [second.id]) == []
        assert message_page(s, agent.id) == []
