"""The quick doorbell's task message: the envelope a worker consumes (its end-to-end run is
tests/test_cli_quick.py::test_quick_send_is_run_by_the_real_worker)."""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid

import pytest

from memq.constants import STEP_TASK
from memq.quick.doorbell import step_message


@pytest.mark.parametrize("agent_id", ["3f2a9c1e-0b7d-4e8a-9c61-5d2f0a7b8e41", "odd 'id' \"with\" \\ é ✓"])
def test_the_envelope_carries_the_agent_and_queue_and_fresh_ids(agent_id):
    # given an agent id (memq's own form, or one with characters JSON must escape)
    # when two messages are built for it
    first, second = (json.loads(step_message(agent_id, "interactive")) for _ in range(2))
    # then the body is the task's args, kwargs and embed, base64-encoded JSON
    assert json.loads(base64.b64decode(first["body"])) == [[agent_id], {},
                                                           {"callbacks": None, "errbacks": None, "chain": None,
                                                            "chord": None}]
    headers, props = first["headers"], first["properties"]
    assert headers["task"] == STEP_TASK and headers["argsrepr"] == repr([agent_id])
    assert headers["origin"] == f"gen{os.getpid()}@{socket.gethostname()}"
    assert props["delivery_info"] == {"exchange": "", "routing_key": "interactive"}
    # and the task id is a version-4 UUID, also the root and correlation id; every id is new each time
    task_id = headers["id"]
    assert uuid.UUID(task_id).version == 4 and str(uuid.UUID(task_id)) == task_id
    assert headers["root_id"] == props["correlation_id"] == task_id
    ids = {task_id, props["reply_to"], props["delivery_tag"], second["headers"]["id"],
           second["properties"]["reply_to"], second["properties"]["delivery_tag"]}
    assert len(ids) == 6


def test_each_queue_gets_its_own_routing_key():
    # given two queues; when a message is built for each; then each names its own queue
    keys = {json.loads(step_message("a1", q))["properties"]["delivery_info"]["routing_key"]
            for q in ("batch", "ingest")}
    assert keys == {"batch", "ingest"}
