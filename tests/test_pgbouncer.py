"""memq behind PgBouncer in transaction mode (the fleet's connection pooler; deploy/).

PgBouncer before 1.21 (Debian 12 ships 1.18) gives each transaction whichever server
connection is free, so psycopg's server-side prepared statements fail there;
``?prepare_threshold=none`` on the database URL turns them off (storage/pgurl.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from stack import WorkerProcess, own_stack
from storage.pgurl import split_driver_options
from tests.chaos.checker import check

needs_pgbouncer = pytest.mark.skipif(shutil.which("pgbouncer") is None and not Path("/usr/sbin/pgbouncer").exists(),
                                     reason="pgbouncer not installed (apt-get install pgbouncer)")
AGENTS = 8
MESSAGES = 4


def test_driver_options_are_split_off_the_url_and_bad_ones_named():
    assert split_driver_options("postgresql://u@h:6432/db?prepare_threshold=none&sslmode=disable") == (
        "postgresql://u@h:6432/db?sslmode=disable", {"prepare_threshold": None})
    assert split_driver_options("postgresql://u@h/db?prepare_threshold=0")[1] == {"prepare_threshold": 0}
    assert split_driver_options("postgresql://u@h/db") == ("postgresql://u@h/db", {})
    with pytest.raises(ValueError, match="prepare_threshold in the database URL must be a number or none"):
        split_driver_options("postgresql://u@h/db?prepare_threshold=lots")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pgbouncer(tmp: Path, server: str) -> tuple[subprocess.Popen, int]:
    """PgBouncer in transaction mode on a free port, in front of ``server`` (host:port), trust auth."""
    port = _free_port()
    host, _, pg_port = server.partition(":")
    (tmp / "userlist.txt").write_text('"root" ""\n')
    (tmp / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={host} port={pg_port or 5432}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
        f"listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {tmp / 'userlist.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 500\n"
        "ignore_startup_parameters = extra_float_digits,options\n")
    cmd = [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"]
    if os.geteuid() == 0:  # it refuses to run as root
        shutil.chown(tmp, "postgres")
        for f in tmp.iterdir():
            shutil.chown(f, "postgres")
        cmd += ["-u", "postgres"]
    proc = subprocess.Popen([*cmd, str(tmp / "pgbouncer.ini")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("pgbouncer did not start")


@needs_pgbouncer
@pytest.mark.timeout(180)
def test_two_worker_processes_through_pgbouncer_transaction_mode(memq_env, tmp_path):
    from memq.client import Client
    from memq.settings import Settings

    with own_stack(memq_env, "memq_test_pgb") as env:
        direct = env["MEMQ_DATABASE_URL"]
        pgb_dir = tmp_path / "pgbouncer"
        pgb_dir.mkdir()
        pgb, port = _pgbouncer(pgb_dir, direct.split("@", 1)[1].split("/", 1)[0])
        # given workers and a client that reach Postgres only through PgBouncer
        env = {**env, "MEMQ_DATABASE_URL": direct.replace(direct.split("@", 1)[1].split("/", 1)[0],
                                                          f"127.0.0.1:{port}") + "?prepare_threshold=none"}
        log_path = tmp_path / "worker.log"
        worker = WorkerProcess(env, log_path, "--processes", "2", "--concurrency", "10")
        settings = Settings(**{k.removeprefix("MEMQ_").lower(): v for k, v in env.items()
                               if k.startswith("MEMQ_") and k != "MEMQ_HOME"}, home=env["MEMQ_HOME"])
        client = Client.connect(settings)
        try:
            deadline = time.monotonic() + 90
            while log_path.read_bytes().count(b" ready.") < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            agents = [client.create_agent(f"pgb-{i}").id for i in range(AGENTS)]
            sent = {a: [f"agent-{i} msg-{j}" for j in range(MESSAGES)] for i, a in enumerate(agents)}
            keys = {a: {t: f"{a}:{t}" for t in texts} for a, texts in sent.items()}
            # when every agent is sent its messages at once (many more statements than the
            # prepare threshold, on PgBouncer's 10 shared server connections)
            runs = [client.send(a, t, idempotency_key=keys[a][t]).run_id for j in range(MESSAGES)
                    for a, texts in sent.items() for t in texts[j:j + 1]]
            # then every run finishes, exactly once and in order
            finals = [client.wait(r, timeout_s=60) for r in runs]
            assert {r.status for r in finals} == {"done"}, log_path.read_text()[-3000:]
            report = check(direct, sent, keys)
            summary = {k: report[k] for k in ("lost", "duplicated", "reordered", "overlapping", "wrong_replies")}
            assert summary == dict.fromkeys(summary, 0), (summary, report["notes"])
            assert "prepared statement" not in log_path.read_text()
        finally:
            client.close()
            worker.stop()
            pgb.terminate()
            pgb.wait(timeout=10)
