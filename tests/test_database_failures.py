"""A step that fails because of the database (here: a full disk, as Postgres reports it) is
retried until the database is well again; such failures never use up MEMQ_STEP_MAX_ATTEMPTS,
which gives up only on events that keep killing their worker."""

from __future__ import annotations

import time
import uuid

import psycopg

from stack import own_stack, worker_and_client

FAST_RETRY = {"MEMQ_STEP_MAX_ATTEMPTS": "2", "MEMQ_LEASE_S": "2", "MEMQ_RECONCILE_EVERY_S": "0.3",
              "MEMQ_RECONCILE_IDLE_S": "0.3", "MEMQ_RECONCILE_RERING_S": "0.3"}


def test_a_full_disk_delays_a_step_but_never_makes_its_run_give_up(memq_env, llm, tmp_path):
    with own_stack(memq_env, "memq_diskfull", **FAST_RETRY) as env, \
            worker_and_client(env, tmp_path / "worker.log", "--concurrency", "4") as (worker, client):
        db_url = env["MEMQ_DATABASE_URL"]
        agent = client.create_agent(f"disk-{uuid.uuid4().hex[:6]}", persona="p", human="h")
        llm.set_default(agent.id, {"tool": "send_message", "args": {"message": "stored at last"}})  # every attempt
        # given a database that refuses the agent's writes as a full disk does (SQLSTATE 53100)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"""
                CREATE FUNCTION refuse_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.agent_id = '{agent.id}' THEN
                        RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
                    END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER disk_full BEFORE INSERT ON steps FOR EACH ROW EXECUTE FUNCTION refuse_disk_full();
            """)
        # when a message comes, and its step fails on the database more often than the attempt limit
        run = client.send(agent.id, "hello")
        deadline = time.monotonic() + 30
        while worker.log_path.read_text().count("DiskFull") < 5:
            assert time.monotonic() < deadline, worker.log_path.read_text()[-3000:]
            time.sleep(0.2)
        assert client.get_run(run.run_id).status == "queued"
        # then, once the disk has room again, the run is answered (it did not give up)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER disk_full ON steps")
        done = client.wait(run.run_id, timeout_s=30)
        assert done.status == "done" and done.replies == ["stored at last"], done
