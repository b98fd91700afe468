"""Run ``tests/scripted_llm.py`` as the benchmark's LLM, with TCP_NODELAY on its sockets.

    python -m benchmarks.llm_server --port 0 --latency-ms 0     # prints "READY http://..."

The scripted server writes a response's headers and body in two sends; with
Nagle's algorithm on, the body waits for the client's delayed ACK, ~40 ms on
Linux, so a "0-ms" LLM answers in ~44 ms. Real providers' servers set
TCP_NODELAY; so does this launcher, without changing the module it runs.
"""

from __future__ import annotations

import importlib.util
import socket
import sys

from benchmarks.env import SCRIPTED_LLM


def load_scripted_llm():
    spec = importlib.util.spec_from_file_location("scripted_llm", SCRIPTED_LLM)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["scripted_llm"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def patch_nodelay(mod) -> bool:
    """Make the module's server set TCP_NODELAY on every accepted socket."""
    base = getattr(mod, "_Server", None)
    if base is None:
        return False

    class NoDelayServer(base):  # type: ignore[misc, valid-type]
        def get_request(self):
            sock, addr = super().get_request()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock, addr

    mod._Server = NoDelayServer
    return True


def main(argv: list[str]) -> None:
    mod = load_scripted_llm()
    if not patch_nodelay(mod):
        print("warning: scripted_llm has no _Server; running it unpatched", file=sys.stderr, flush=True)
    mod.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
