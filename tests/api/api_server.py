"""A `memq serve` subprocess and the `memq key` CLI, for the API tests."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from stack import stop_process_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`memq serve` on a free port, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")
        cmd = [sys.executable, "-m", "memq.cli.main", "serve", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_up(self, timeout_s: float = 60.0) -> "ServeProcess":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memq serve exited:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"memq serve not up:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process_group(self.proc)
        self._log.close()


def memq_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memq.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def new_key(env: dict[str, str], tenant: str) -> dict:
    out = memq_cli(env, "key", "create", "--tenant", tenant, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def use_then_revoke(server_url: str, env: dict[str, str], tenant: str) -> dict:
    """A new key of `tenant` (`memq key create`'s document), used once (so the server has it
    cached), then revoked by its prefix."""
    made = new_key(env, tenant)
    headers = {"Authorization": f"Bearer {made['key']}"}
    assert httpx.get(f"{server_url}/v1/agents/", headers=headers).status_code == 200
    out = memq_cli(env, "key", "revoke", made["prefix"], "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["revoked_at"], out.stderr
    return made
