"""Running memq in production, through real processes: deploy files, Flower,
the worker's metrics, `memq status`, and logs (JSON, context, no secrets).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import yaml

from stack import stop_process_group

ROOT = Path(__file__).resolve().parent.parent
MEMQ = [sys.executable, "-m", "memq.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memq(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*MEMQ, *args], env=env, capture_output=True, text=True, timeout=timeout)


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Proc:
    """A memq subprocess in its own process group, its output in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([*MEMQ, *args], env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, needle: str, timeout_s: float = 60) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited early:\n{self.text()[-3000:]}")
            return needle in self.text()

        wait_for(seen, timeout_s, f"{needle!r} in {self.log_path.name}")

    def stop(self) -> None:
        stop_process_group(self.proc)
        self._log.close()


def worker_names(log_text: str) -> list[str]:
    return re.findall(r"([\w.\-]+@[\w.\-]+) ready\.", log_text)


# -- deploy/ ------------------------------------------------------------------------
def test_deploy_files_validate_offline():
    # .ci/validate-deploy: compose config, k8s manifests against bundled schemas, Dockerfile
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run([str(ROOT / ".ci" / "validate-deploy")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "neither 'docker compose' nor 'docker-compose' is available" in done.stderr:
        pytest.skip("no compose tool could be installed here (needs root and apt-get): " + done.stderr.strip())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: deploy/compose.yaml" in done.stdout
    assert "ok: 8 manifests in deploy/k8s" in done.stdout


def _seconds(value) -> float:
    text = str(value)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    assert m, text
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def test_stop_grace_outlasts_the_longest_step():
    # given the LLM settings the manifests ship with
    docs = [d for f in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    longest = (int(config["MEMQ_LLM_MAX_RETRIES"]) + 1) * (
        float(config["MEMQ_LLM_TIMEOUT_S"]) + float(config["MEMQ_LLM_BACKOFF_MAX_S"]))
    # then every worker Deployment waits longer than one step on TERM
    workers = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("memq-worker-")]
    assert {w["metadata"]["name"] for w in workers} == {
        "memq-worker-interactive", "memq-worker-batch", "memq-worker-schedule"}
    for w in workers:
        pod = w["spec"]["template"]
        assert pod["spec"]["terminationGracePeriodSeconds"] > longest
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    assert [d["spec"]["replicas"] for d in docs if d["metadata"]["name"] == "memq-beat"] == [1]
    # and so does compose (same defaults in .env.example)
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    for name in ("worker-interactive", "worker-batch", "worker-schedule"):
        assert _seconds(compose["services"][name]["stop_grace_period"]) > longest
        assert compose["services"][name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_fleet_reaches_postgres_through_pgbouncer_with_one_process_per_pod():
    # given the shipped manifests and compose file
    docs = [d for f in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "memq-secrets")
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    # then memq's URL names PgBouncer, without server-side prepared statements (transaction mode)
    for url in (secret["stringData"]["MEMQ_DATABASE_URL"], compose["x-memq"]["environment"]["MEMQ_DATABASE_URL"]):
        assert ":6432/" in url and url.endswith("?prepare_threshold=none"), url
    pooler = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "memq-pgbouncer")
    env = {e["name"]: e["value"] for e in pooler["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POOL_MODE"] == compose["services"]["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    # and every worker pod runs one process (it may see every core of its node)
    workers = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("memq-worker-")]
    for w in workers:
        args = w["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--processes") + 1] == "1", w["metadata"]["name"]


# -- Flower ---------------------------------------------------------------------------
def test_flower_refuses_to_start_without_credentials(memq_env):
    env = {k: v for k, v in memq_env.items() if not k.startswith("MEMQ_FLOWER_")}
    done = memq(env, "flower", "--port", str(free_port()))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "MEMQ_FLOWER_PASSWORD" in lines[0]
    assert "--insecure" in lines[0]


def test_flower_asks_for_credentials_and_sees_the_worker(memq_env, worker, tmp_path):
    port, password = free_port(), f"pw-{uuid.uuid4().hex}"
    env = {**memq_env, "MEMQ_FLOWER_USER": "ops", "MEMQ_FLOWER_PASSWORD": password}
    flower = Proc(env, tmp_path / "flower.log", "flower", "--port", str(port), "--address", "127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/healthcheck", timeout=2).status_code == 200, 30, "flower to listen")
        # without credentials, or with wrong ones: 401
        assert httpx.get(f"{base}/api/workers", timeout=5).status_code == 401
        assert httpx.get(f"{base}/api/workers", auth=("ops", "wrong"), timeout=5).status_code == 401
        assert httpx.get(f"{base}/", timeout=5).status_code == 401
        # with them: 200, and the suite's worker shows up
        expected = set(worker_names(worker.log_path.read_text()))
        assert expected, "the test worker logged no 'ready.' line"

        def listed():
            r = httpx.get(f"{base}/api/workers", params={"refresh": "1"}, auth=("ops", password), timeout=10)
            assert r.status_code == 200, r.text
            return expected & set(r.json())

        assert wait_for(listed, 30, "the worker in /api/workers", interval_s=0.5)
    finally:
        flower.stop()
    assert password not in flower.text()


# -- the worker: metrics, JSON logs, no secrets ------------------------------------
@pytest.fixture(scope="module")
def ops_env(memq_env, redis_url) -> Iterator[dict[str, str]]:
    """A worker env of its own: another Redis db (so only this worker takes its steps),
    a unique API key, JSON logs, and a password in the database URL (trust auth ignores it)."""
    from stack import REDIS_SERVER, claim_redis_db, hold_claim

    other = f"{REDIS_SERVER}/{claim_redis_db()}"
    redis.Redis.from_url(other).flushdb()
    hold_claim(other)
    db_url = memq_env["MEMQ_DATABASE_URL"]
    scheme, rest = db_url.split("://", 1)
    user, host = rest.split("@", 1)
    db_password = f"dbpw-{uuid.uuid4().hex}"
    yield {
        **memq_env,
        "MEMQ_BROKER_URL": other,
        "MEMQ_DATABASE_URL": f"{scheme}://{user.split(':')[0]}:{db_password}@{host}",
        "MEMQ_LLM_API_KEY": f"sk-memq-{uuid.uuid4().hex}",
        "MEMQ_LOG_JSON": "1",
        "MEMQ_TEST_DB_PASSWORD": db_password,
    }
    redis.Redis.from_url(other).flushdb()  # also gives the database back


@pytest.fixture(scope="module")
def ops_worker(ops_env, tmp_path_factory) -> Iterator[tuple[Proc, int]]:
    port = free_port()
    log = tmp_path_factory.mktemp("ops-worker") / "worker.log"
    proc = Proc(ops_env, log, "worker", "--concurrency", "8", "--metrics-port", str(port),
                "--hostname", f"ops-{uuid.uuid4().hex[:6]}@%h")
    try:
        proc.wait_for_output(" ready.", 60)
        yield proc, port
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def ops_client(ops_env):
    from memq.client import Client
    from memq.settings import Settings

    settings = Settings(**{k.removeprefix("MEMQ_").lower(): v for k, v in ops_env.items()
                           if k.startswith("MEMQ_") and not k.startswith("MEMQ_TEST_")})
    c = Client.connect(settings)
    yield c
    c.close()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_worker_metrics_count_steps(ops_worker, ops_client):
    _, port = ops_worker
    before = scrape(port)
    agent = ops_client.create_agent(f"ops-{uuid.uuid4().hex[:6]}", persona="p", human="h")
    run = ops_client.send(agent.id, "hello metrics", wait=True, timeout_s=30)
    assert run.status == "done" and run.replies == ["echo: hello metrics"]

    def counted():
        after = scrape(port)
        return after if after.get(("memq_steps_total", (("outcome", "tool_ok"),)), 0) > before.get(
            ("memq_steps_total", (("outcome", "tool_ok"),)), 0) else None

    after = wait_for(counted, 10, "memq_steps_total to grow")

    def grew(name: str, labels: tuple = ()) -> bool:
        return after.get((name, labels), 0) > before.get((name, labels), 0)

    assert grew("memq_runs_finished_total", (("status", "done"),))
    assert grew("memq_doorbells_total", (("result", "committed"),))
    assert grew("memq_step_duration_seconds_count", (("queue", "interactive"),))
    assert grew("memq_llm_latency_seconds_count")
    assert grew("memq_llm_tokens_total", (("kind", "prompt"),))
    assert grew("memq_llm_tokens_total", (("kind", "completion"),))
    # the broker is read on each scrape
    assert after[("memq_broker_up", ())] == 1
    for queue in ("interactive", "batch", "schedule", "ingest"):
        assert ("memq_queue_depth", (("queue", queue),)) in after
    # unlabelled counters are exported from the start, at zero until something happens
    assert ("memq_chain_capped_total", ()) in after and ("memq_lease_takeovers_total", ()) in after


def test_worker_logs_are_json_with_context_and_hold_no_secret(ops_env, ops_worker, ops_client):
    proc, _ = ops_worker
    agent = ops_client.create_agent(f"ops-{uuid.uuid4().hex[:6]}", persona="p", human="h")
    run = ops_client.send(agent.id, "hello logs", wait=True, timeout_s=30)
    assert run.status == "done"

    def step_lines():
        records = [json.loads(line) for line in proc.text().splitlines() if line.strip()]
        return [r for r in records if r.get("logger") == "memq.step" and r.get("agent_id") == agent.id] or None

    # every line is one JSON object with the base fields
    steps = wait_for(step_lines, 10, "the step's log line")
    for line in proc.text().splitlines():
        if line.strip():
            record = json.loads(line)
            assert {"time", "level", "logger", "message"} <= set(record), line
    # the step line carries its agent, run and step number
    assert steps[0]["run_id"] == run.run_id and isinstance(steps[0]["step"], int)
    assert "tool_ok" in steps[0]["message"]
    # and at INFO it is the task's only line: Celery's "received" / "succeeded in" lines show at DEBUG only
    celery_task_lines = [line for line in proc.text().splitlines()
                         if '"logger": "celery.app.trace"' in line or '"logger": "celery.worker.strategy"' in line]
    assert celery_task_lines == []
    # no secret anywhere: the log, `memq status --json`, `memq agent show --json`
    secrets = [ops_env["MEMQ_LLM_API_KEY"], ops_env["MEMQ_TEST_DB_PASSWORD"]]
    log_text = proc.text()
    assert "postgresql://" in log_text and "***@" in log_text  # the database URL was logged, masked
    status = memq(ops_env, "status", "--json")
    show = memq(ops_env, "agent", "show", agent.id, "--json")
    assert show.returncode == 0, show.stderr
    for secret in secrets:
        for where, text in (("worker log", log_text), ("status", status.stdout + status.stderr),
                            ("agent show", show.stdout + show.stderr)):
            assert secret not in text, f"a secret leaked into {where}"


def test_logging_setup_masks_secrets_and_adds_step_context(monkeypatch):
    from memq import logging_setup

    key, pw = f"sk-{uuid.uuid4().hex}", f"pw{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MEMQ_LLM_API_KEY", key)
    monkeypatch.setenv("MEMQ_DATABASE_URL", f"postgresql://u:{pw}@db/x")
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logging_setup.configure("INFO", json_logs=True, stream=stream)
        log = logging.getLogger("memq.test")
        token = logging_setup.bind(agent_id="a-1", run_id="r-1", step=7)
        try:
            log.info("calling with key %s", key)
            try:
                raise RuntimeError(f"connect to redis://:{pw}@broker:6379 failed ({key})")
            except RuntimeError:
                log.exception("broker down")
        finally:
            logging_setup.unbind(token)
        log.warning("outside a step: %s", f"amqp://guest:{pw}@rabbit//")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.captureWarnings(False)
        logging_setup.REDACTOR.refresh()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    text = stream.getvalue()
    assert key not in text and pw not in text
    assert lines[0]["message"] == "calling with key ***"
    assert (lines[0]["agent_id"], lines[0]["run_id"], lines[0]["step"]) == ("a-1", "r-1", 7)
    assert "RuntimeError" in lines[1]["exc"] and "redis://:***@broker" in lines[1]["exc"]
    assert "agent_id" not in lines[2] and lines[2]["message"] == "outside a step: amqp://guest:***@rabbit//"


# -- memq status -----------------------------------------------------------------------
def _database_answered(check: dict) -> bool:
    """Up, or answering slowly on a loaded machine (status warns after 1 s; not a failure)."""
    return check["status"] == "up" or (check["status"] == "warn" and check["detail"].startswith("slow: answered"))


def test_status_reports_everything_up(memq_env, worker):
    started = time.monotonic()
    done = memq(memq_env, "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    checks = doc["checks"]
    assert doc["ok"] is True and doc["mode"] == "server" and doc["down"] == []
    assert _database_answered(checks["database"]) and checks["broker"]["status"] == "up"
    assert checks["llm"]["status"] == "up"
    assert checks["qdrant"]["status"] == ("up" if memq_env.get("MEMQ_QDRANT_URL") else "embedded")
    assert checks["workers"]["status"] == "up"
    assert set(worker_names(worker.log_path.read_text())) <= set(checks["workers"]["names"])
    assert set(doc["queues"]) == {"interactive", "batch", "schedule", "ingest"}
    assert {"agents", "messages", "longest_wait_s"} <= set(doc["pending"])
    assert time.monotonic() - started < 15


def test_status_reports_a_stopped_broker_and_exits_1(memq_env, client, agent):
    # given an agent with a message waiting (its lease held, so no worker takes it)
    from storage import repository as repo

    with client.rt.db.transaction() as s:
        assert repo.acquire_lease(s, agent.id, owner="test-ops", lease_s=300, now_s=time.time())
    client.send(agent.id, "waiting for a worker")
    # when the broker is a port where nothing listens
    env = {**memq_env, "MEMQ_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    started = time.monotonic()
    done = memq(env, "status", "--json")
    # then the broker is down, status exits 1, and the database part still answers
    assert done.returncode == 1, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["ok"] is False and doc["down"] == ["broker"]
    assert doc["checks"]["broker"]["status"] == "down"
    assert _database_answered(doc["checks"]["database"])
    assert doc["checks"]["workers"]["status"] == "skipped"
    assert done.stderr.startswith("error: down: broker") and len(done.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 15
    pending = doc["pending"]
    assert pending["agents"] >= 1 and pending["messages"] >= 1 and pending["longest_wait_s"] >= 0
    assert all(w["pending"] >= 1 for w in pending["longest_waiting"])


def test_status_in_embedded_mode(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMQ_")}
    env["MEMQ_HOME"] = str(tmp_path)
    done = memq(env, "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["mode"] == "embedded" and doc["checks"]["broker"]["status"] == "embedded"
    assert doc["checks"]["database"]["target"].startswith("sqlite:///")
    assert doc["checks"]["llm"]["status"] == "not checked" and doc["queues"] is None
    assert doc["checks"]["qdrant"]["status"] == "embedded"


def test_qdrant_and_llm_checks_over_http():
    # given a server whose /readyz is fine and whose /models refuses the key, then nothing at all
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from memq.health import check_llm, check_qdrant
    from memq.settings import Settings

    seen: dict[str, str | None] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen[self.path] = self.headers.get("api-key") or self.headers.get("Authorization")
            self.send_response({"/readyz": 200, "/v1/models": 401}.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        ok = check_qdrant(Settings(qdrant_url=url, qdrant_api_key="qk-123456"))
        refused = check_llm(Settings(llm_api_base=f"{url}/v1", llm_api_key="sk-123456"))
    finally:
        server.shutdown()
        server.server_close()
    assert ok.status == "up" and seen["/readyz"] == "qk-123456"
    assert refused.status == "down" and "401" in refused.detail and seen["/v1/models"] == "Bearer sk-123456"
    # a port where nothing listens: down, within the check's timeout
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert check_qdrant(Settings(qdrant_url=dead)).status == "down"
    assert check_llm(Settings(llm_api_base=dead)).status == "down"
    assert time.monotonic() - started < 7
