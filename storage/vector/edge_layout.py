"""Where each collection of the embedded store lives on disk, and the store's lock.

    <path>/memq-vector.lock         flock held while a process has the store open
    <path>/<collection>/            the first shard of a collection
    <path>/<collection>.current     names the live shard's directory once an index build was adopted
    <path>/<collection>-<hex>/      a shard adopted from a build (storage/vector/edge_build.py)
    <path>/.build/                  builds in progress (removed by the next owner after a crash)
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

from storage.vector.base import AGENT_ID, COLLECTIONS, CREATED_AT_S, KIND, ROW_ID, VectorStoreLocked

CURRENT_SUFFIX = ".current"
BUILD_DIR = ".build"
LOCK_FILE = "memq-vector.lock"


def ensure_field_indexes(qe: Any, shard: Any) -> None:
    """The payload indexes every search relies on (agent_id as the tenant key)."""
    schema = shard.info().payload_schema
    wanted = {
        AGENT_ID: qe.KeywordIndexParams(is_tenant=True),
        KIND: qe.PayloadSchemaType.Keyword,
        CREATED_AT_S: qe.PayloadSchemaType.Float,
        ROW_ID: qe.PayloadSchemaType.Integer,
    }
    for field_name, schema_type in wanted.items():
        if field_name not in schema:
            shard.update(qe.UpdateOperation.create_field_index(field_name, schema_type))


def current_dir(path: Path, name: str) -> str:
    """The directory holding ``name``'s live shard: ``name`` until an index build is adopted."""
    try:
        chosen = (path / f"{name}{CURRENT_SUFFIX}").read_text().strip()
    except FileNotFoundError:
        return name
    return chosen if chosen.startswith(name) and "/" not in chosen else name


def set_current(path: Path, name: str, dirname: str) -> None:
    tmp = path / f"{name}{CURRENT_SUFFIX}.tmp"
    with open(tmp, "w") as f:
        f.write(dirname + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / f"{name}{CURRENT_SUFFIX}")


def remove_leftovers(path: Path) -> None:
    """Builds a crashed owner left behind, and shards a finished build replaced."""
    shutil.rmtree(path / BUILD_DIR, ignore_errors=True)
    for name in COLLECTIONS:
        live = current_dir(path, name)
        for old in path.glob(f"{name}-*"):
            if old.is_dir() and old.name != live:
                shutil.rmtree(old, ignore_errors=True)
        if live != name and (path / name).is_dir():
            shutil.rmtree(path / name, ignore_errors=True)


class StoreLock:
    """An exclusive, non-blocking flock on ``<path>/memq-vector.lock``.

    flock belongs to the open file description, so a second open in the same
    process conflicts as well, and the kernel drops it when the process dies
    (a crashed holder never leaves a stale lock).
    """

    def __init__(self, path: Path) -> None:
        self.path = path / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            except OSError:
                pass
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f"process {holder}" if holder else "another process"
                raise VectorStoreLocked(
                    f"the embedded vector store at {path} is already open by {who}; "
                    "only one process may open it at a time (stop that process, or run "
                    "a Qdrant server and set MEMQ_QDRANT_URL so many processes can share it)"
                ) from exc
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
