"""Tenants and their API keys. A key's text is shown once; only its sha256 is kept."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from storage.models import ApiKey, Tenant, utcnow
from storage.repository.errors import BadInput, NotFound

KEY_PREFIX = "memq_"
_PREFIX_CHARS = 12  # shown by `memq key list` to tell keys apart; reveals ~7 random characters
_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def ensure_tenant(session: Session, name: str) -> Tenant:
    """The tenant of that name, created if it does not exist yet."""
    if not _TENANT_NAME.match(name or ""):
        raise BadInput(
            f"bad tenant name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    tenant = session.get(Tenant, name)
    if tenant is None:
        tenant = Tenant(id=name, created_at=utcnow())
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, tenant: str, *, name: str | None = None) -> tuple[ApiKey, str]:
    """A new key of the tenant (created if new): returns the row and the key's text."""
    ensure_tenant(session, tenant)
    text = KEY_PREFIX + secrets.token_urlsafe(32)  # 256 bits of randomness
    row = ApiKey(
        id=str(uuid.uuid4()),
        tenant_id=tenant,
        key_sha256=key_sha256(text),
        prefix=text[:_PREFIX_CHARS],
        name=name,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row, text


def list_keys(session: Session, tenant: str | None = None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant is not None:
        stmt = stmt.where(ApiKey.tenant_id == tenant)
    return list(session.scalars(stmt))


def revoke_key(session: Session, ref: str) -> ApiKey:
    """Revoke a key named by its id or its displayed prefix (it must name exactly one key)."""
    ref = (ref or "").strip()
    if not ref:
        raise BadInput("key id must not be empty")
    rows = list(session.scalars(select(ApiKey).where(or_(ApiKey.id == ref, ApiKey.prefix == ref)).limit(2)))
    if not rows:
        raise NotFound(f"unknown key: {ref}")
    if len(rows) > 1:
        raise BadInput(f"key '{ref}' is ambiguous: give the key's id")
    row = rows[0]
    if row.revoked_at is None:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(revoked_at=utcnow()))
        session.refresh(row)
    return row


def tenant_for_key(session: Session, key: str) -> str | None:
    """The tenant a live key belongs to; None for an unknown or revoked key."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    stmt = select(ApiKey.tenant_id).where(ApiKey.key_sha256 == key_sha256(key), ApiKey.revoked_at.is_(None))
    return session.scalars(stmt).first()
