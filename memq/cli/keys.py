"""`memq key create|list|revoke`: API keys of `memq serve`, one tenant each."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from memq.cli.opts import Json
from memq.cli.output import emit_json

app = typer.Typer(help="API keys of `memq serve` (each belongs to one tenant).", no_args_is_help=True)


def _database() -> Any:
    from memq.cli.connect import load_settings, prepare_embedded
    from storage.db import Database

    settings = load_settings()
    db = Database(settings.resolved_database_url, pool_size=2)
    prepare_embedded(db, settings)
    return db


def _key_doc(row: Any) -> dict[str, Any]:
    from storage.repository.messages import iso_utc

    return {
        "id": row.id,
        "tenant": row.tenant_id,
        "prefix": row.prefix,
        "name": row.name,
        "created_at": iso_utc(row.created_at),
        "revoked_at": iso_utc(row.revoked_at) if row.revoked_at else None,
    }


@app.command("create")
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant (created if new).", show_default=False)],
    name: Annotated[Optional[str], typer.Option(help="A note to tell keys apart.")] = None,
    json_out: Json = False,
) -> None:
    """Create a key; its text is printed this once (only its hash is stored)."""
    from storage.repository.tenants import create_key

    db = _database()
    try:
        with db.transaction() as s:
            row, text = create_key(s, tenant, name=name)
            doc = {**_key_doc(row), "key": text}
    finally:
        db.dispose()
    if json_out:
        emit_json(doc)
        return
    typer.echo(f"key {doc['id']} for tenant {tenant} (shown once, keep it safe):\n{text}")


@app.command("list")
def list_(
    tenant: Annotated[Optional[str], typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    json_out: Json = False,
) -> None:
    """List keys (prefix, tenant, created, revoked); never their text."""
    from storage.repository.tenants import list_keys

    db = _database()
    try:
        with db.transaction() as s:
            docs = [_key_doc(k) for k in list_keys(s, tenant)]
    finally:
        db.dispose()
    if json_out:
        emit_json({"keys": docs})
        return
    for d in docs:
        state = f"revoked {d['revoked_at']}" if d["revoked_at"] else "active"
        typer.echo(f"{d['id']}  {d['prefix']}…  {d['tenant']}  {d['created_at']}  {state}  {d['name'] or ''}")


@app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="The key's id or its displayed prefix.", show_default=False)],
    json_out: Json = False,
) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    from storage.repository.tenants import revoke_key

    db = _database()
    try:
        with db.transaction() as s:
            doc = _key_doc(revoke_key(s, key))
    finally:
        db.dispose()
    if json_out:
        emit_json(doc)
        return
    typer.echo(f"revoked key {doc['id']} ({doc['prefix']}…) of tenant {doc['tenant']}")
