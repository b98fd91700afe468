"""Archival memory in embedded mode: document ingestion with the offline model, and
archival search over a large embedded vector store.

    python -m benchmarks.memory [--pages 200] [--passages 100000] [--queries 200] [--out FILE]

1. Ingestion: a generated N-page text PDF goes through ``Client.ingest`` (parse,
   chunk, SQLite rows, local all-MiniLM-L6-v2 embeddings, qdrant-edge upserts) end
   to end -> pages/s and chunks/s. Baseline in the same run: the bare
   ``Embedder.embed`` of the same chunk texts (batches of 64, as ingestion uses), so
   what ingestion adds beyond embedding is visible. The model is loaded (and warmed)
   before either is timed.
2. Archival search: one agent holds N passages (SQLite rows inserted in bulk, their
   vectors upserted into the embedded store directly, hashed bag-of-words vectors
   from tests/scripted_llm.py). ``Client.archival_search`` is timed end to end
   (query embedding over HTTP from the scripted server, edge search, row fetch,
   paging) against the bare ``EdgeIndex.search`` of the same query vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pdf_sample import make_pdf  # noqa: E402
from scripted_llm import ScriptedLLM, embed as hashed_embed  # noqa: E402

WORDS = (
    "river mountain falcon copper lantern harbor meadow glacier orchard beacon canyon "
    "thunder willow marble compass cedar prairie violet ember quartz tundra lagoon "
    "summit harvest granite breeze anchor cobalt dune fern grove island jasper kettle "
    "ledger mosaic nectar oasis pepper quiver raven saffron timber umber valley walnut "
    "yarrow zephyr archive bridge candle delta engine forest garnet hollow ivory jungle "
    "kernel lumber magnet nickel olive parcel quarry ribbon signal tablet uplink vessel"
).split()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


# -- a text PDF, one page of distinct sentences per page -------------------------------


def pdf_pages(n: int, rng: random.Random) -> list[list[str]]:
    """Each page: a numbered heading line and ~25 lines of distinct sentences (~2 KB of text)."""
    return [[f"Page {p + 1} of the field report."] + [sentence(rng, 12) for _ in range(25)] for p in range(n)]


def connect(settings):
    """Client.connect on a migrated database (its background indexer starts at once)."""
    from storage.db import Database
    from memq.client import Client

    db = Database(settings.resolved_database_url)
    db.upgrade()
    db.dispose()
    c = Client.connect(settings)
    c.rt.db.upgrade()  # a no-op now
    return c


def close(c) -> None:
    """Client.close, after the background indexer thread has really ended.

    Client.close only signals that thread; a pass still running reopens the vector
    store after the runtime closed it (and would recreate a deleted home).
    """
    if c.indexer is not None:
        c.indexer.stop()
        thread = getattr(c.indexer, "_thread", None)
        if thread is not None and thread.is_alive():
            thread.join(60)
    c.close()


# -- 1. ingestion -----------------------------------------------------------------------


def ingest_once(pdf: Path, pages: int, background_indexer: bool) -> dict:
    """Client.ingest of ``pdf`` into a fresh embedded home; counts the texts each thread embedded."""
    import threading
    from collections import Counter

    from sqlalchemy import select

    from memq.settings import Settings
    from storage.models import Passage

    home = Path(tempfile.mkdtemp(prefix="memq-bench-ingest-"))
    settings = Settings(home=home, database_url=None, broker_url=None, qdrant_url=None,
                        embedding_model="local/all-MiniLM-L6-v2", embedding_dim=384,
                        embedding_api_base=None, qdrant_path=str(home / "qdrant"))
    c = connect(settings)
    try:
        agent = c.create_agent("reader")
        embedded: Counter[str] = Counter()
        embedder = c.rt.memory.embedder
        inner = embedder.embed

        def counting_embed(texts, *a, **kw):
            embedded[threading.current_thread().name] += len(texts)
            return inner(texts, *a, **kw)

        embedder.embed = counting_embed
        if not background_indexer and c.indexer is not None:
            c.indexer.stop()
        time.sleep(1.5)  # let the indexer's first pass (the new agent's messages) finish
        embedded.clear()
        t0 = time.perf_counter()
        result = c.ingest(agent.id, [pdf])
        ingest_s = time.perf_counter() - t0
        doc = result["documents"][0]
        if doc["error"] or not doc["indexed"]:
            raise SystemExit(f"ingestion failed: {doc}")
        with c.rt.db.transaction() as s:
            texts = list(s.scalars(select(Passage.text).where(Passage.agent_id == agent.id).order_by(Passage.id)))
        assert len(texts) == doc["chunks"], (len(texts), doc["chunks"])
    finally:
        close(c)
        shutil.rmtree(home, ignore_errors=True)
    return {"texts": texts, "ingest_s": round(ingest_s, 2), "pages_per_s": round(pages / ingest_s, 1),
            "chunks_per_s": round(len(texts) / ingest_s, 1),
            "texts_embedded_by_thread": dict(embedded)}


def bench_ingest(pages: int) -> dict:
    from memq.settings import Settings
    from storage.embeddings import Embedder

    home = Path(tempfile.mkdtemp(prefix="memq-bench-pdf-"))
    pdf = home / "report.pdf"
    pdf.write_bytes(make_pdf(pdf_pages(pages, random.Random(1)), font_size=10, leading=12, top=740))
    embedder = Embedder.from_settings(Settings(embedding_model="local/all-MiniLM-L6-v2", embedding_dim=384))
    t0 = time.perf_counter()
    embedder.embed(["warm up the offline model"] * 8)
    load_s = time.perf_counter() - t0

    # As an embedded Client runs it (its background indexer thread on), then with
    # that thread stopped: the indexer also picks up the just-committed, not yet
    # indexed passages, so it can embed the same chunks a second time.
    default = ingest_once(pdf, pages, background_indexer=True)
    alone = ingest_once(pdf, pages, background_indexer=False)
    texts = alone.pop("texts")
    default.pop("texts")
    chunks = len(texts)

    t0 = time.perf_counter()
    for start in range(0, chunks, 64):  # ingestion's batches (INDEX_BATCH)
        embedder.embed(texts[start : start + 64])
    embed_s = time.perf_counter() - t0
    pdf_bytes = pdf.stat().st_size
    shutil.rmtree(home, ignore_errors=True)
    return {
        "pages": pages, "pdf_bytes": pdf_bytes, "chunks": chunks,
        "mean_chunk_chars": round(statistics.mean(len(t) for t in texts)),
        "model_load_s": round(load_s, 2),
        "with_background_indexer": default,
        "without_background_indexer": alone,
        "baseline_embed_s": round(embed_s, 2),
        "baseline_embed_chunks_per_s": round(chunks / embed_s, 1),
        "overhead_beyond_embedding_s": round(default["ingest_s"] - embed_s, 2),
        "overhead_beyond_embedding_without_indexer_s": round(alone["ingest_s"] - embed_s, 2),
    }


# -- 2. archival search at scale --------------------------------------------------------


def bench_search(passages: int, queries: int, build: bool = True, stream_steps: int = 60) -> dict:
    from datetime import datetime, timezone

    from sqlalchemy import insert, update

    from memq.settings import Settings
    from storage.models import Agent, Passage
    from storage.vector.base import ARCHIVAL, Point

    rng = random.Random(2)
    home = Path(tempfile.mkdtemp(prefix="memq-bench-search-"))
    llm = ScriptedLLM().start()
    settings = Settings(home=home, database_url=None, broker_url=None, qdrant_url=None,
                        embedding_model="openai/scripted-embed", embedding_api_base=llm.url,
                        embedding_api_key="k", embedding_dim=384, qdrant_path=str(home / "qdrant"),
                        llm_model="openai/scripted", llm_api_base=llm.url, llm_api_key="k")
    c = connect(settings)
    indexed: dict = {}
    try:
        agent_id = c.create_agent("archivist").id

        t0 = time.perf_counter()
        texts = [f"Note {i}: " + " ".join(rng.choice(WORDS) for _ in range(16)) for i in range(passages)]
        now = datetime.now(timezone.utc)
        with c.rt.db.transaction() as s:
            for start in range(0, passages, 10_000):
                s.execute(insert(Passage), [{"agent_id": agent_id, "text": t, "source": "agent", "indexed": True,
                                             "created_at": now} for t in texts[start : start + 10_000]])
            s.execute(update(Agent).where(Agent.id == agent_id).values(passage_count=passages))
        with c.rt.db.transaction() as s:
            from sqlalchemy import select
            ids = list(s.scalars(select(Passage.id).where(Passage.agent_id == agent_id).order_by(Passage.id)))
        rows_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        vectors = [hashed_embed(t, 384) for t in texts]
        vectors_s = time.perf_counter() - t0

        index = c.rt.memory.vectors.index()
        if hasattr(index, "start_index_builder"):
            index.start_index_builder().stop()  # the build below is timed on its own
        created = now.timestamp()
        t0 = time.perf_counter()
        for start in range(0, passages, 1_000):
            index.upsert(ARCHIVAL, [Point(ids[i], agent_id, vectors[i], {"kind": "agent", "created_at_s": created})
                                    for i in range(start, min(start + 1_000, passages))])
        upsert_s = time.perf_counter() - t0
        count = index.count(ARCHIVAL, agent_id)
        info = index.info().get(ARCHIVAL, {}) if hasattr(index, "info") else {}

        qtexts = [" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(queries)]
        qvecs = [hashed_embed(q, 384) for q in qtexts]
        # warm-up (first HTTP connection, first query) outside the timings
        for q, v in zip(qtexts[:5], qvecs[:5]):
            c.archival_search(agent_id, q)
            index.search(ARCHIVAL, agent_id, v, 50)

        bare_ms = []
        for v in qvecs:
            t0 = time.perf_counter()
            index.search(ARCHIVAL, agent_id, v, 50)
            bare_ms.append((time.perf_counter() - t0) * 1000)
        e2e_ms = []
        totals = []
        for q in qtexts:
            t0 = time.perf_counter()
            doc = c.archival_search(agent_id, q)
            e2e_ms.append((time.perf_counter() - t0) * 1000)
            totals.append(doc["total"])
        emb_requests = len(llm.embedding_requests())
        if build and hasattr(index, "start_index_builder"):
            from benchmarks.memory_index import build_during_steps, summary, timed_searches

            others = [c.create_agent(f"other-{k}").id for k in range(3)]
            indexed = build_during_steps(c, index, ARCHIVAL, others, stream_steps)
            if c.indexer is not None:  # idle before the build, as for the baselines: not still
                c.indexer.stop()       # embedding the stream's recall messages beside the searches
            indexed["index_info"] = index.info().get(ARCHIVAL, {})
            indexed["bare"] = summary(timed_searches(lambda v: index.search(ARCHIVAL, agent_id, v, 50), qvecs))
            indexed["e2e"] = summary(timed_searches(lambda q: c.archival_search(agent_id, q), qtexts))
            indexed["loadavg"] = loadavg()
    finally:
        close(c)
        llm.stop()
        shutil.rmtree(home, ignore_errors=True)
    return {
        "passages": passages, "points_counted": count, "index_info": info, "queries": queries,
        "rows_insert_s": round(rows_s, 2), "vectors_gen_s": round(vectors_s, 2),
        "upsert_s": round(upsert_s, 2), "upsert_points_per_s": round(passages / upsert_s),
        "search_e2e_p50_ms": round(pct(e2e_ms, 0.5), 2), "search_e2e_p95_ms": round(pct(e2e_ms, 0.95), 2),
        "search_e2e_mean_ms": round(statistics.mean(e2e_ms), 2),
        "baseline_index_search_p50_ms": round(pct(bare_ms, 0.5), 2),
        "baseline_index_search_p95_ms": round(pct(bare_ms, 0.95), 2),
        "baseline_index_search_mean_ms": round(statistics.mean(bare_ms), 2),
        "mean_results_per_search": round(statistics.mean(totals), 1),
        "embedding_requests": emb_requests, "indexed": indexed,
    }


def print_indexed(srch: dict) -> None:
    ix = srch["indexed"]
    b = ix["build"] or {}
    print(f"\n  HNSW build in a child process (loadavg {ix['loadavg']}): {b or ix['build_error']}")
    print(f"    owner CPU during the build {ix['owner_cpu_during_build_s']} s, child CPU {ix['child_cpu_s']} s, "
          f"longest stall of an owner thread {ix['owner_thread_max_stall_ms']} ms "
          f"({ix['owner_thread_max_stall_at_s']} s into the build); index {ix['index_info']}")
    for label, key in (("before the build", "steps_before_build"), ("during the build, all", "steps_during_build"),
                       (f"during it, child building ({ix['window_s']:.0f}-s windows)", "steps_child_building"),
                       ("during it, child held (SIGSTOP; same-time baseline)", "steps_child_held"),
                       ("after the build", "steps_after_build")):
        r = ix[key]
        print(f"    steps of 3 other agents through the owner (one run / 50 ms), {label}: n={r['n']} p50 {r['p50_ms']} ms, "
              f"p95 {r['p95_ms']} ms")
    print(f"    after the build: EdgeIndex.search p50 {ix['bare']['p50_ms']} ms, p95 {ix['bare']['p95_ms']} ms "
          f"(baseline before it: p50 {srch['baseline_index_search_p50_ms']} ms)")
    print(f"    after the build: Client.archival_search end to end p50 {ix['e2e']['p50_ms']} ms, "
          f"p95 {ix['e2e']['p95_ms']} ms (baseline before it: p50 {srch['search_e2e_p50_ms']} ms)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--no-build", action="store_true", help="skip the HNSW build and the steps beside it")
    ap.add_argument("--stream-steps", type=int, default=60, help="steps in each baseline stream beside the build")
    ap.add_argument("--skip-ingest", action="store_true", help="only the archival search part")
    args = ap.parse_args(argv)

    import torch

    machine = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "loadavg_start": loadavg()}
    print(f"machine: nproc={machine['nproc']} python={machine['python']} torch={machine['torch']} "
          f"(threads={machine['torch_threads']}) loadavg={machine['loadavg_start']}", flush=True)

    t_all = time.perf_counter()
    ing: dict = {}
    if not args.skip_ingest:
        ing = bench_ingest(args.pages)
        print(f"\ningestion ({ing['pages']}-page PDF, {ing['pdf_bytes'] // 1024} KiB, local/all-MiniLM-L6-v2, SQLite + qdrant-edge)")
        print(f"  model load+warm-up (not timed below): {ing['model_load_s']} s")
        for label, key in (("embedded Client (background indexer on)", "with_background_indexer"),
                           ("background indexer stopped", "without_background_indexer")):
            r = ing[key]
            print(f"  Client.ingest end to end, {label}: {r['ingest_s']} s -> {r['pages_per_s']} pages/s, "
                  f"{r['chunks_per_s']} chunks/s; texts embedded per thread {r['texts_embedded_by_thread']}")
        print(f"  ({ing['chunks']} chunks, mean {ing['mean_chunk_chars']} chars)")
        print(f"  baseline Embedder.embed of the same chunks: {ing['baseline_embed_s']} s -> "
              f"{ing['baseline_embed_chunks_per_s']} chunks/s")
        print(f"  overhead beyond embedding: {ing['overhead_beyond_embedding_s']} s with the indexer on, "
              f"{ing['overhead_beyond_embedding_without_indexer_s']} s with it stopped", flush=True)

    srch = bench_search(args.passages, args.queries, build=not args.no_build, stream_steps=args.stream_steps)
    print(f"\narchival search (one agent, {srch['passages']} passages, embedded qdrant-edge, dim 384)")
    print(f"  rows bulk insert (SQLite): {srch['rows_insert_s']} s; hashed vectors generated: {srch['vectors_gen_s']} s")
    print(f"  upsert {srch['passages']} points (batches of 1000): {srch['upsert_s']} s -> "
          f"{srch['upsert_points_per_s']} points/s; counted {srch['points_counted']}; index {srch['index_info']}")
    print(f"  Client.archival_search end to end ({srch['queries']} queries): p50 {srch['search_e2e_p50_ms']} ms, "
          f"p95 {srch['search_e2e_p95_ms']} ms (mean {srch['search_e2e_mean_ms']} ms, "
          f"{srch['mean_results_per_search']} results each)")
    print(f"  baseline EdgeIndex.search alone, limit 50: p50 {srch['baseline_index_search_p50_ms']} ms, "
          f"p95 {srch['baseline_index_search_p95_ms']} ms (mean {srch['baseline_index_search_mean_ms']} ms)")

    if srch["indexed"]:
        print_indexed(srch)
    machine["loadavg_end"] = loadavg()
    total_s = round(time.perf_counter() - t_all, 1)
    print(f"\ntotal {total_s} s; loadavg at end {machine['loadavg_end']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine, "ingest": ing, "search": srch,
                                              "total_s": total_s}, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
