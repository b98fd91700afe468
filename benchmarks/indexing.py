"""What recall indexing adds to a step: a 150-step heartbeat chain run in-process
(run_step on Postgres, scripted 0-ms LLM) without and with semantic memory, the
background indexer embedding every message in the same process.

    python -m benchmarks.indexing [--steps 150] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchmarks.env import BenchDatabase  # noqa: E402
from scripted_llm import ScriptedLLM  # noqa: E402


def chain(llm: ScriptedLLM, semantic: bool, steps: int) -> tuple[float, float, bool]:
    from sqlalchemy import func, select

    from memq.client import Client
    from memq.settings import Settings
    from storage import repository as repo
    from storage.models import IndexCursor, Message
    from workers.indexer import BackgroundIndexer
    from workers.step import run_step

    db = BenchDatabase()
    extra = dict(embedding_model="openai/scripted-embed", embedding_api_base=llm.url, embedding_api_key="k",
                 qdrant_path=tempfile.mkdtemp(prefix="memq-idx-")) if semantic else {}
    settings = Settings(database_url=db.url, broker_url="redis://127.0.0.1:6379/15", llm_model="openai/scripted",
                        llm_api_base=llm.url, llm_api_key="k", max_chain=100_000, **extra)
    client = Client.connect(settings)
    indexer = None
    try:
        client.rt.db.upgrade()
        client.rt.warm_up()
        if semantic:
            client.rt.memory.vectors.index()
            indexer = BackgroundIndexer(client.rt, every_s=0.2).start()
        agent = client.create_agent("idx")
        llm.set_default(agent.id, {"tool": "send_message", "args": {"message": "a reply", "request_heartbeat": True}})
        with client.rt.db.transaction() as s:
            repo.enqueue_message(s, agent.id, "go", max_chars=100)
        for _ in range(5):
            run_step(client.rt, agent.id)
        t, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            run_step(client.rt, agent.id)
        wall_ms, cpu_ms = (time.perf_counter() - t) / steps * 1000, (time.process_time() - cpu) / steps * 1000
        caught_up = True
        if semantic:
            time.sleep(1.0)
            with client.rt.db.transaction() as s:
                cursor = s.get(IndexCursor, "recall")
                caught_up = cursor is not None and cursor.last_id == s.scalar(select(func.max(Message.id)))
        return wall_ms, cpu_ms, caught_up
    finally:
        if indexer:
            indexer.stop()
        client.close()
        db.drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    llm = ScriptedLLM().start()
    try:
        plain, semantic, ok = [], [], True
        for _ in range(args.rounds):
            plain.append(chain(llm, False, args.steps))
            w, c, caught = chain(llm, True, args.steps)
            semantic.append((w, c, caught))
            ok = ok and caught
        pw, pc = statistics.median(x[0] for x in plain), statistics.median(x[1] for x in plain)
        sw, sc = statistics.median(x[0] for x in semantic), statistics.median(x[1] for x in semantic)
        print(f"step without recall indexing: {pw:.1f} ms wall, {pc:.1f} ms CPU")
        print(f"step with the indexer running: {sw:.1f} ms wall, {sc:.1f} ms CPU (process, indexer included)")
        print(f"indexing adds {sw - pw:+.1f} ms wall / {sc - pc:+.1f} ms CPU per step; indexer kept up: {ok}")
    finally:
        llm.stop()


if __name__ == "__main__":
    main()
