"""Documents into archival memory: parsing and chunking per kind, `Client.ingest`,
and the `memq archival|recall|ingest|reindex` commands.

The CLI tests run the real console script in embedded mode (SQLite, the
embedded vector store under MEMQ_HOME) with the scripted server answering
/v1/embeddings with hashed bag-of-words vectors; the last test goes through a
real worker that owns the embedded Qdrant store.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from helpers import call, tool_results  # noqa: E402
from pdf_sample import make_pdf  # noqa: E402
from test_cli import assert_one_line_error, embedded_env, run_memq  # noqa: E402

from storage.ingest import (  # noqa: E402
    MAX_CHUNK_CHARS,
    IngestError,
    chunk_code,
    chunk_markdown,
    code_blocks,
    chunk_text,
    detect_kind,
    parse_bytes,
    parse_file,
)

# -- sample files, made here ----------------------------------------------------


def encrypted(pdf: bytes, user: str, owner: str | None = None) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user, owner, algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


GUIDE_MD = """Preamble before any heading.

# Field guide

## Birds

Herons wade in shallow water.

```python
# this is a comment, not a heading

print("inside the fence")
```

### Owls

Owls hunt at night. The tawny owl is common in zanzibar groves.

Setext section
--------------

Under a setext heading.
"""

MODULE_PY = '''"""A module."""

import os

LIMIT = 3


@cache
def frobnicate_widgets(count):
    """Frobnicate some widgets."""
    total = 0

    for i in range(count):
        total += i
    return total


# helpers below
class Gadget:
    def spin(self):
        return "spin"
def loose():
    return os.sep
'''


def lines_of(text: str, header: str) -> str:
    first, last = (int(n) for n in re.fullmatch(r".*:(\d+)-(\d+)", header).groups())
    return "\n".join(text.split("\n")[first - 1 : last])


# -- kinds ------------------------------------------------------------------------


@pytest.mark.parametrize("name,data,kind", [
    ("a.pdf", b"x", "pdf"), ("noext", b"%PDF-1.4 ...", "pdf"), ("README.md", b"# x", "markdown"),
    ("x.markdown", b"x", "markdown"), ("m.py", b"x", "code"), ("m.ts", b"x", "code"), ("m.go", b"x", "code"),
    ("m.rs", b"x", "code"), ("q.sql", b"x", "code"), ("run.sh", b"x", "code"), ("Makefile", b"x", "code"),
    ("notes.txt", b"x", "text"), ("notes.unknownext", b"x", "text"), ("tool", b"#!/bin/sh\necho", "code"),
])
def test_kind_by_extension_name_or_content(name, data, kind):
    assert detect_kind(name, data) == kind


# -- markdown -----------------------------------------------------------------------


def test_markdown_splits_on_headings_and_keeps_the_trail():
    chunks = parse_bytes(GUIDE_MD.encode(), "guide.md").chunks
    heads = [c.split("\n", 1)[0] for c in chunks]
    assert heads == ["guide.md", "guide.md § Field guide > Birds", "guide.md § Field guide > Birds > Owls",
                     "guide.md § Field guide > Setext section"]
    # the fenced block stays whole and its '#' line is not a heading
    birds = chunks[1]
    assert "# this is a comment, not a heading\n\nprint(\"inside the fence\")" in birds
    assert "zanzibar" in chunks[2] and "zanzibar" not in chunks[1]
    assert chunks[3].endswith("Under a setext heading.")


def test_markdown_long_section_is_split_into_paragraph_chunks_with_overlap():
    paragraphs = [f"Paragraph {i} talks about topic {i}. " * 8 for i in range(20)]
    text = "# Long\n\n" + "\n\n".join(paragraphs)
    chunks = chunk_markdown(text, "long.md", max_chars=600, overlap=80)
    assert len(chunks) > 5
    assert all(c.startswith("long.md § Long\n") and len(c) <= 600 for c in chunks)
    # every chunk after the first begins with the end of the one before
    for before, after in zip(chunks, chunks[1:]):
        body = after.split("\n", 1)[1]
        assert before.endswith(body[:20]) or body[:20] in before
    # no paragraph is cut when it fits
    assert all(any(p.strip() in c for c in chunks) for p in paragraphs)


def test_markdown_of_only_headings_keeps_them():
    assert parse_bytes(b"# One\n## Two\n", "h.md").chunks == ["h.md\n# One\n## Two"]


# -- code -------------------------------------------------------------------------


def test_code_splits_at_top_level_definitions_with_line_ranges():
    chunks = chunk_code(MODULE_PY, "pkg/module.py", max_chars=220)
    heads = [c.split("\n", 1)[0] for c in chunks]
    # each chunk's header names the file and the exact lines it holds
    for chunk, head in zip(chunks, heads):
        assert chunk.split("\n", 1)[1] == lines_of(MODULE_PY, head)
    assert heads[0].startswith("pkg/module.py:1-")
    # the decorated function is in one chunk, decorator included, blank line inside kept
    fn = next(c for c in chunks if "def frobnicate_widgets" in c)
    assert "@cache\ndef frobnicate_widgets(count):" in fn and "total = 0\n\n    for i" in fn and "return total" in fn
    # the comment stays with the class; a def right after the class body starts a new block
    assert any(c.split("\n")[1:3] == ["# helpers below", "class Gadget:"] for c in chunks)
    assert heads[-1].startswith("pkg/module.py:") and "def loose" in chunks[-1]
    lines = MODULE_PY.split("\n")
    starts = [lines[a] for a, _ in code_blocks(lines)]
    assert starts == ['"""A module."""', "import os", "LIMIT = 3", "@cache", "# helpers below", "def loose():"]
    assert all(len(c) <= 220 for c in chunks)


def test_code_blocks_in_brace_languages():
    go = "package main\n\nimport \"fmt\"\n\nfunc a() {\n\tfmt.Println(1)\n\n\treturn\n}\n\nfunc b() int {\n\treturn 2\n}\n"
    chunks = chunk_code(go, "m.go", max_chars=60)
    assert [c.split("\n", 1)[0] for c in chunks] == ["m.go:1-3", "m.go:5-9", "m.go:11-13"]


def test_a_huge_function_is_split_by_lines_within_the_bound():
    body = "\n".join(f"    x{i} = compute({i}) + another_call({i})" for i in range(200))
    text = f"def huge():\n{body}\n    return x1\n\n\ndef small():\n    return 1\n"
    chunks = chunk_code(text, "huge.py")
    assert len(chunks) > 3
    assert all(len(c) <= MAX_CHUNK_CHARS for c in chunks)
    for c in chunks:
        head, code = c.split("\n", 1)
        assert code == lines_of(text, head)
    ranges = [tuple(int(n) for n in c.split("\n", 1)[0].rsplit(":", 1)[1].split("-")) for c in chunks]
    assert ranges[0][0] == 1 and all(b[0] > a[1] for a, b in zip(ranges, ranges[1:]))  # ordered, no gaps lost
    assert "def small" in chunks[-1]


def test_a_minified_line_is_sliced_with_its_line_number():
    chunks = chunk_code("var a=1;" * 500, "min.js")
    assert len(chunks) > 2 and all(c.startswith("min.js:1-1\n") and len(c) <= MAX_CHUNK_CHARS for c in chunks)


# -- text -------------------------------------------------------------------------


def test_text_paragraphs_are_packed_and_overlap():
    paragraphs = [f"Paragraph {i}. " + "word " * 60 for i in range(10)]
    chunks = chunk_text("\n\n".join(paragraphs), "notes.txt", max_chars=800, overlap=100)
    assert len(chunks) >= 4 and all(c.startswith("notes.txt\n") and 0 < len(c) <= 800 for c in chunks)
    for before, after in zip(chunks, chunks[1:]):  # the overlap: the next chunk starts inside the previous one
        assert after.split("\n", 1)[1][:40] in before


def test_a_paragraph_without_breaks_is_split_at_sentences_then_words():
    text = " ".join(f"Sentence number {i} is here." for i in range(300)) + " " + "x" * 5000
    chunks = chunk_text(text, "wall.txt")
    assert all(0 < len(c) <= MAX_CHUNK_CHARS for c in chunks)
    assert "Sentence number 299 is here." in "".join(chunks)
    assert sum(c.count("x") for c in chunks) >= 5000


_WORD = st.text(alphabet="abcdefghij", min_size=1, max_size=12)
_LINE = st.lists(_WORD, min_size=0, max_size=30).map(" ".join)
_DOC = st.lists(st.one_of(_LINE, st.just(""), st.just("# heading"), st.just("    indented"), st.just("}"),
                          st.just("```")), min_size=1, max_size=80).map("\n".join)


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_DOC, max_chars=st.integers(200, 900))
def test_chunks_are_bounded_never_empty_and_lose_no_word(doc, max_chars):
    words = set(re.findall(r"[a-j]+", doc.replace("heading", "").replace("indented", "")))
    for chunker in (lambda: chunk_text(doc, "d.txt", max_chars=max_chars, overlap=60),
                    lambda: chunk_markdown(doc, "d.md", max_chars=max_chars, overlap=60),
                    lambda: chunk_code(doc, "d.py", max_chars=max_chars)):
        chunks = chunker()
        assert all(c.strip() and len(c) <= max_chars for c in chunks)
        found = set(re.findall(r"[a-j]+", " ".join(c.split("\n", 1)[1] if "\n" in c else "" for c in chunks)))
        assert words <= found


# -- pdf --------------------------------------------------------------------------


def test_pdf_text_per_page():
    pdf = make_pdf([["Quokkas are small marsupials.", "They live on Rottnest Island."],
                    ["The second page is about marmalade."]])
    parsed = parse_bytes(pdf, "animals.pdf")
    assert parsed.kind == "pdf" and parsed.size_bytes == len(pdf)
    assert parsed.chunks[0].startswith("animals.pdf (page 1)\n") and "Quokkas" in parsed.chunks[0]
    assert parsed.chunks[1].startswith("animals.pdf (page 2)\n") and "marmalade" in parsed.chunks[1]


def test_pdf_with_only_an_owner_password_is_read():
    pdf = encrypted(make_pdf([["Readable without a password."]]), user="", owner="owner-secret")
    assert "Readable" in parse_bytes(pdf, "open.pdf").chunks[0]


@pytest.mark.parametrize("data,why", [
    (encrypted(make_pdf([["secret"]]), user="pw"), "encrypted PDF (it needs a password)"),
    (b"%PDF-1.4\n1 0 obj << /Type /Catalog", "is not a readable PDF"),
    (make_pdf([["cut short"]])[:120], "is not a readable PDF"),
    (b"just some text named like a pdf", "is not a readable PDF"),
    (make_pdf([[]]), "has no extractable text"),
])
def test_bad_pdfs_are_clear_errors(data, why):
    with pytest.raises(IngestError) as err:
        parse_bytes(data, "docs/bad.pdf")
    assert "docs/bad.pdf" in str(err.value) and why in str(err.value)


# -- not text -----------------------------------------------------------------------


@pytest.mark.parametrize("name,data,why", [
    ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not a text file"),
    ("latin1.txt", "café".encode("latin-1"), "is not a text file"),
    ("empty.md", b"", "is empty"),
    ("blank.txt", b" \n\n\t\n", "is empty"),
])
def test_binary_undecodable_and_empty_files_are_errors(name, data, why):
    with pytest.raises(IngestError) as err:
        parse_bytes(data, name)
    assert str(err.value).startswith(name) and why in str(err.value)


def test_utf16_with_bom_and_crlf_are_text(tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes("line one\r\nline two\r\n\r\nnext paragraph".encode("utf-16"))
    assert parse_file(path, name="win.txt").chunks == ["win.txt\nline one\nline two\n\nnext paragraph"]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(IngestError, match="no such file"):
        parse_file(tmp_path / "nope.txt")
    with pytest.raises(IngestError, match="is a directory"):
        parse_file(tmp_path)


# -- Client.ingest in-process (embedded SQLite) -----------------------------------------


@pytest.fixture
def local_client(tmp_path):
    from memq.cli.connect import QueueOnly
    from memq.client import Client
    from memq.settings import Settings
    from workers.runtime import Runtime

    client = Client(Runtime.build(Settings(home=tmp_path / "home", database_url=None, broker_url=None,
                                           embedding_model=None)), QueueOnly())
    client.rt.db.upgrade()
    yield client
    client.close()


def test_ingest_keeps_good_files_when_one_fails_and_reports_progress(local_client, tmp_path):
    from sqlalchemy import select

    from storage.models import Document, Passage

    agent = local_client.create_agent("reader")
    (tmp_path / "a.md").write_text(GUIDE_MD)
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01binary")
    (tmp_path / "b.py").write_text(MODULE_PY)
    calls = []
    doc = local_client.ingest(agent.id, [tmp_path / "a.md", tmp_path / "bin.dat", tmp_path / "b.py"],
                              progress=lambda done, total, path: calls.append((done, total, path)))
    assert (doc["ok"], doc["failed"]) == (2, 1)
    good, bad, code = doc["documents"]
    assert bad["error"] and "bin.dat is not a text file" in bad["error"] and bad["document_id"] is None
    assert good["kind"] == "markdown" and code["kind"] == "code" and not good["indexed"]
    assert "no embedding model" in good["note"]
    # progress: monotone, ends at the total of the readable files' chunks
    total = good["chunks"] + code["chunks"]
    assert calls[-1][:2] == (total, total)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    with local_client.rt.db.transaction() as s:
        docs = {d.id: d for d in s.scalars(select(Document).where(Document.agent_id == agent.id))}
        passages = list(s.scalars(select(Passage).where(Passage.agent_id == agent.id).order_by(Passage.id)))
    assert set(docs) == {good["document_id"], code["document_id"]}
    assert docs[code["document_id"]].chunks == code["chunks"] and docs[code["document_id"]].size_bytes == len(MODULE_PY)
    assert [p.chunk_no for p in passages if p.document_id == code["document_id"]] == list(range(code["chunks"]))
    assert all(p.source == "document" for p in passages)
    with local_client.rt.db.transaction() as s:
        from storage.models import Agent

        assert s.get(Agent, agent.id).passage_count == total
    # found by words without an embedding model
    assert "zanzibar" in local_client.archival_search(agent.id, "zanzibar")["results"][0]["text"]


def test_ingest_unknown_agent_is_not_found_before_anything(local_client, tmp_path):
    from storage.repository.errors import NotFound

    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(NotFound, match="unknown agent"):
        local_client.ingest("no-such-agent", [tmp_path / "a.txt"])


def test_an_indexing_failure_after_the_commit_is_indexed_later(local_client, tmp_path):
    from sqlalchemy import select

    from storage.models import Passage

    class DownEmbedder:
        def embed(self, texts):
            raise ConnectionError("embedding service down")

    agent = local_client.create_agent("reader")
    (tmp_path / "a.txt").write_text("Kept even though the embedder is down.")
    local_client.rt.memory.embedder = DownEmbedder()
    doc = local_client.ingest(agent.id, [tmp_path / "a.txt"])
    entry = doc["documents"][0]
    assert doc["failed"] == 0 and entry["error"] is None and entry["indexed"] is False
    assert entry["note"].startswith("indexed later")
    with local_client.rt.db.transaction() as s:
        rows = list(s.scalars(select(Passage).where(Passage.agent_id == agent.id)))
    assert len(rows) == 1 and rows[0].indexed is False  # the background indexer picks it up


# -- the CLI, embedded ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(tmp_path_factory, llm):
    """An embedded home with semantic search on the scripted embeddings; an agent made in-process."""
    from memq.cli.connect import QueueOnly
    from memq.client import Client
    from memq.settings import Settings
    from workers.runtime import Runtime

    home = tmp_path_factory.mktemp("ingest-home")
    env = embedded_env(home, llm, MEMQ_EMBEDDING_MODEL="openai/scripted-embed", MEMQ_EMBEDDING_API_BASE=llm.url,
                       MEMQ_EMBEDDING_DIM="384")
    store = Client(Runtime.build(Settings(home=home, database_url=None, broker_url=None)), QueueOnly())
    store.rt.db.upgrade()
    agent_id = store.create_agent("librarian").id
    store.close()  # never opens the vector store: the CLI processes own it one at a time
    files = home / "files"
    files.mkdir()
    (files / "guide.md").write_text(GUIDE_MD)
    (files / "module.py").write_text(MODULE_PY)
    (files / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog")
    return env, agent_id, files


def test_cli_ingest_search_insert_and_reindex(cli, llm):
    env, agent_id, files = cli
    # when three files are ingested, one of them broken (named relative to their folder: a chunk's
    # header holds the path as given, and the scripted embedding hashes its words, so a word of
    # pytest's numbered temp dir could outscore the query's own word by a bucket collision)
    result = run_memq(env, "ingest", agent_id, "guide.md", "module.py", "broken.pdf", "--json", cwd=files)
    # then it exits 1 after storing the two good ones, and names the broken one on stderr
    assert result.code == 1, result.err
    err = result.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "broken.pdf is not a readable PDF" in err[0]
    doc = result.doc
    assert (doc["ok"], doc["failed"]) == (2, 1)
    md, py, pdf = doc["documents"]
    assert md["kind"] == "markdown" and md["indexed"] and md["chunks"] == 4
    assert py["kind"] == "code" and py["indexed"] and py["document_id"]
    assert pdf["error"] and pdf["document_id"] is None

    # and each is found by a distinctive word, the right chunk first
    found = run_memq(env, "archival", "search", agent_id, "zanzibar owls", "--json")
    assert found.code == 0, found.err
    top = found.doc["results"][0]
    assert top["source"] == "document" and top["text"].startswith("guide.md § Field guide > Birds > Owls")
    code = run_memq(env, "archival", "search", agent_id, "frobnicate_widgets", "--json").doc["results"][0]
    head = code["text"].split("\n", 1)[0]
    assert re.fullmatch(re.escape("module.py") + r":\d+-\d+", head) and "def frobnicate_widgets" in code["text"]

    # archival insert, then search (human output: a table)
    inserted = run_memq(env, "archival", "insert", agent_id, "The lighthouse keeper's parrot is named Captain.", "--json")
    assert inserted.code == 0 and inserted.doc["indexed"] is True
    shown = run_memq(env, "archival", "search", agent_id, "parrot lighthouse")
    assert shown.code == 0 and "Captain" in shown.out and "Page 1 of 1" in shown.out

    # reindex rebuilds this agent's passages: 4 + code chunks + 1 inserted
    again = run_memq(env, "reindex", agent_id, "--json")
    assert again.code == 0, again.err
    assert again.doc["reindexed"]["passages"] == md["chunks"] + py["chunks"] + 1
    human = run_memq(env, "reindex", agent_id)
    assert human.code == 0 and f"{md['chunks'] + py['chunks'] + 1} passages" in human.out


def test_cli_recall_search_after_a_turn(cli, llm):
    env, agent_id, _ = cli
    llm.script(agent_id, call("send_message", message="Noted: the hangar door code is 8812."))
    sent = run_memq(env, "send", agent_id, "The hangar door code is 8812, remember it.", "--wait", "--json")
    assert sent.code == 0 and sent.doc["status"] == "done", sent.out + sent.err
    result = run_memq(env, "recall", "search", agent_id, "hangar door code", "--start", "2020-01-01",
                      "--end", "2999-12-31", "--json")
    assert result.code == 0, result.err
    texts = [r["text"] for r in result.doc["results"]]
    assert any("8812" in t for t in texts) and {r["role"] for r in result.doc["results"]} <= {"user", "assistant"}
    # a date range before everything finds nothing
    none = run_memq(env, "recall", "search", agent_id, "hangar", "--end", "2001-01-01", "--json")
    assert none.code == 0 and none.doc["results"] == []


def test_cli_bad_input_is_one_line(cli):
    env, agent_id, files = cli
    assert_one_line_error(run_memq(env, "ingest", "no-such-agent", str(files / "guide.md")), "unknown agent")
    assert_one_line_error(run_memq(env, "recall", "search", agent_id, "x", "--start", "last tuesday"), "--start")
    assert_one_line_error(run_memq(env, "recall", "search", agent_id, "x", "--start", "2026-02-01",
                                   "--end", "2026-01-01"), "--start must be before --end")
    assert_one_line_error(run_memq(env, "archival", "search", "no-such-agent", "x"), "unknown agent")


# -- through the real worker (it owns the embedded Qdrant store) ---------------------------


def test_ingest_through_the_worker_owned_store(client, agent, tmp_path):
    path = tmp_path / "manual.md"
    path.write_text("# Manual\n\n## Boilers\n\nBleed the radiators every autumn.\n\n"
                    "## Garden\n\nThe persimmon tree needs pruning in winter.\n")
    doc = client.ingest(agent.id, [path])
    entry = doc["documents"][0]
    assert doc["ok"] == 1 and entry["indexed"] is True and entry["chunks"] == 2
    top = client.archival_search(agent.id, "persimmon pruning")["results"][0]
    assert "score" in top and "persimmon" in top["text"] and "§ Manual > Garden" in top["text"]


def test_documents_through_a_worker_agent_finds_them_isolated_reingest_noop_reindex_restores(
        client, agent, llm, tmp_path):
    from storage.vector.base import ARCHIVAL

    # given a PDF, a Markdown file and a broken PDF, ingested through the worker-owned store
    (tmp_path / "guide.pdf").write_bytes(make_pdf([["The lighthouse keeper feeds the gulls at dawn."],
                                                    ["Quarterly invoices are due on the ninth."]]))
    (tmp_path / "notes.md").write_text("# Notes\n\nThe greenhouse key hangs behind the blue door.\n")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    doc = client.ingest(agent.id, [tmp_path / "guide.pdf", tmp_path / "notes.md", tmp_path / "broken.pdf"])
    # then the broken one fails cleanly and the others are stored and indexed
    assert (doc["ok"], doc["failed"]) == (2, 1)
    assert "broken.pdf" in doc["documents"][2]["error"]
    # and the agent finds a fact from each through its own tool
    for query, fact in (("lighthouse gulls dawn", "gulls"), ("greenhouse key door", "blue door")):
        llm.script(agent.id, call("archival_memory_search", heartbeat=True, query=query),
                   call("send_message", message="ok"))
        client.send(agent.id, f"look up {query}", wait=True, timeout_s=30)
        found = tool_results(client, agent.id)[-2]
        assert found["status"] == "OK" and fact in found["message"], found
    # and a second agent finds none of it
    other = client.create_agent("other-reader")
    assert client.archival_search(other.id, "lighthouse gulls greenhouse key")["results"] == []
    # and ingesting the same files again adds nothing
    before = _passage_count(client, agent.id)
    again = client.ingest(agent.id, [tmp_path / "guide.pdf", tmp_path / "notes.md"])
    assert all("already ingested" in (e["note"] or "") for e in again["documents"])
    assert _passage_count(client, agent.id) == before
    # and after the agent's vectors are gone, reindex brings search back
    client.rt.memory.vectors.index().delete_agent(ARCHIVAL, agent.id)
    assert all("gulls" not in r["text"] for r in client.archival_search(agent.id, "lighthouse gulls dawn")["results"])
    client.reindex(agent.id)
    assert "gulls" in client.archival_search(agent.id, "lighthouse gulls dawn")["results"][0]["text"]


def _passage_count(client, agent_id: str) -> int:
    from sqlalchemy import func, select

    from storage.models import Passage

    with client.rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(Passage).where(Passage.agent_id == agent_id))
