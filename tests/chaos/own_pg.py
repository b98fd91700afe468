"""The chaos run's own Postgres cluster: restarted, frozen and starved of disk
without touching the shared server on 5432.

``initdb`` into a temp dir (as the ``postgres`` OS user: Postgres refuses to run
as root), the postmaster started directly (``postgres -D DIR -p PORT``) in a
process group of its own, trust auth, superuser ``root`` (the shared server's
role name, so URLs look alike), on a free port from 5440 up.

Faults:
* ``restart()``  fast shutdown (SIGINT) and start: every connection is cut.
* ``freeze()`` / ``thaw()``  SIGSTOP the postmaster, then each of its children
  (every backend calls setsid(), so a process-group signal would miss them),
  and SIGCONT them all: sockets stay open, nothing answers.
* ``small_tablespace(size_mb)``  a tmpfs of that size mounted in the run's temp
  dir, made a tablespace; the chaos database is created in it (WAL stays in the
  data dir). ``fill_disk()`` writes a filler file there until ENOSPC;
  ``free_disk()`` deletes it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.chaos.harness import free_port, log, run_cmd, wait_for

PG_BIN = Path(os.environ.get("MEMQ_CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))
OS_USER = "postgres"


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (the postmaster's backends and auxiliaries)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


class OwnPostgres:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port(5440)
        self.dir = Path(tempfile.mkdtemp(prefix="memq-chaos-pg-"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen | None = None
        self.frozen: list[int] = []
        self.small: Path | None = None  # mount point of the small tmpfs
        self.filler: Path | None = None
        self._as_user = os.geteuid() == 0
        if self._as_user:
            pw = pwd.getpwnam(OS_USER)
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
            os.chown(self.dir, self._uid, self._gid)

    @property
    def server_url(self) -> str:
        return f"postgresql://root@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str]) -> None:
        kw = {"user": self._uid, "group": self._gid, "extra_groups": []} if self._as_user else {}
        r = subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)
        if r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {(r.stderr or r.stdout).strip()[-800:]}")

    def init(self) -> "OwnPostgres":
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "root", "--auth=trust",
                   "-E", "UTF8", "--no-sync", "--locale=C"])
        return self.start()

    def _ready(self) -> bool:
        with psycopg.connect(self.server_url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def start(self) -> "OwnPostgres":
        kw = {"user": self._uid, "group": self._gid, "extra_groups": []} if self._as_user else {}
        log_file = open(self.dir / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=400", "-c", "shared_buffers=128MB",
             "-c", "log_min_messages=warning"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, **kw)
        log_file.close()
        wait_for(self._ready, 60, f"own Postgres on port {self.port}", interval=0.2)
        return self

    def _shutdown(self, sig: int = signal.SIGINT, timeout_s: float = 60.0) -> None:
        if self.proc is None:
            return
        self.thaw()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> float:
        """Fast shutdown and start again; seconds until it answers."""
        t0 = time.monotonic()
        self._shutdown()
        self.start()
        return time.monotonic() - t0

    def freeze(self) -> int:
        """SIGSTOP the postmaster first (no new backends), then every child; how many processes."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = [self.proc.pid]
        for pid in _children(self.proc.pid):
            try:
                os.kill(pid, signal.SIGSTOP)
                self.frozen.append(pid)
            except ProcessLookupError:
                pass
        return len(self.frozen)

    def thaw(self) -> None:
        for pid in reversed(self.frozen):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.frozen = []

    # ------------------------------------------------------------------ disk
    def small_tablespace(self, size_mb: int, name: str = "chaos_small") -> str:
        """Mount a tmpfs of size_mb and make it a tablespace; returns its name."""
        self.small = self.dir / "small"
        self.small.mkdir()
        r = run_cmd(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(self.small)])
        if r.returncode != 0:
            raise RuntimeError(f"cannot mount a {size_mb} MB tmpfs: {r.stderr.strip()}")
        if self._as_user:
            os.chown(self.small, self._uid, self._gid)
        (self.small / "ts").mkdir()
        if self._as_user:
            os.chown(self.small / "ts", self._uid, self._gid)
        with psycopg.connect(self.server_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE TABLESPACE {name} LOCATION '{self.small / 'ts'}'")
        return name

    def disk_free_bytes(self) -> int:
        assert self.small is not None
        st = os.statvfs(self.small)
        return st.f_bavail * st.f_frsize

    def fill_disk(self) -> int:
        """Write a filler file until the small filesystem is full; bytes written."""
        assert self.small is not None
        self.filler = self.small / "filler"
        written = 0
        chunk = b"\0" * (1 << 20)
        with open(self.filler, "wb", buffering=0) as f:
            while True:
                try:
                    written += f.write(chunk if self.disk_free_bytes() >= len(chunk) else chunk[:4096])
                except OSError:
                    break
        return written

    def free_disk(self) -> None:
        if self.filler is not None:
            self.filler.unlink(missing_ok=True)
            self.filler = None

    def stop(self) -> None:
        try:
            self._shutdown()
        except Exception as exc:
            log(f"own Postgres did not stop cleanly: {exc}")
        if self.small is not None:
            r = run_cmd(["umount", str(self.small)])
            if r.returncode != 0:
                r = run_cmd(["umount", "-l", str(self.small)])
        shutil.rmtree(self.dir, ignore_errors=True)
