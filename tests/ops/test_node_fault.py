"""Losing a worker node under load: a head and two worker nodes, one TTS replica on each worker.

The head does no TTS work: a TTS replica asks for the custom resource ``avs_tts: 1`` (``tts.resources``)
that only the two workers advertise, one unit each, so the two replicas run one per worker. The
ingress and the job runner are deployed before the workers join, so they run on the head. HTTP goes
through the head's proxy (``proxy_location: HeadOnly``). While async jobs run
and clients send speech requests, one worker's whole process group is killed (a lost machine). What
was injected and what was lost is written to ``test-artifacts/ops/node_fault.json``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port, wait_for_http
from tests.ops.cluster import (
    deploy,
    get,
    ops_app_args,
    post,
    replicas,
    storage_with_tiny_model,
    wait_until,
    write_artifact,
)
from tests.ray_head import RayHead, RayWorkerNode, list_nodes, start_ray_head, start_ray_worker

pytestmark = pytest.mark.slow

APP = "voice-fault"
TTS_RESOURCE = "avs_tts"
JOBS = 4
CLIENTS = 4
REQUEST_TIMEOUT_S = 120.0
LOAD_BEFORE_KILL_S = 8.0
LOAD_AFTER_KILL_S = 25.0
JOB_KEYS = ("status", "progress", "attempts", "error")
JOB_TEXT = (
    "The first sentence of a long job is here. A second sentence follows it closely. "
    "Then comes a third one, a little longer than the others. And the fourth sentence ends it."
)


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    with start_ray_head(num_cpus=1) as started:
        yield started


def _speech_client(url: str, index: int, stop: threading.Event, outcomes: list[dict[str, Any]], t0: float) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        sent = time.monotonic()
        try:
            status, body, kind = post(f"{url}/tts", {"text": f"Client {index} request {n}."}, REQUEST_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:  # a hang past the timeout, or a dropped connection
            status, body, kind = -1, repr(exc).encode(), "client-error"
        error = None
        if status != 200:
            try:
                error = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                error = {"unparsed": body[:300].decode(errors="replace")}
        outcomes.append(
            {
                "client": index,
                "sent_s": round(sent - t0, 2),
                "took_s": round(time.monotonic() - sent, 2),
                "status": status,
                "content_type": kind,
                "error": error,
            }
        )


def test_losing_a_worker_node_loses_no_accepted_job_and_the_service_keeps_answering(
    head: RayHead, tiny_model_dir: Path, tmp_path: Path
) -> None:
    storage = storage_with_tiny_model(tmp_path, tiny_model_dir)
    port = free_port()
    tts = {
        "num_cpus": 0.5,
        "resources": {TTS_RESOURCE: 1},
        "max_ongoing_requests": 2,
        "max_queued_requests": 50,
        "autoscaling": {"min_replicas": 2, "max_replicas": 2},
    }
    # Deployed before the workers join, so the ingress and the job runner can only land on the head.
    deploy(head, port, APP, ops_app_args(storage, tts, job_retry_seconds=300))
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", 240)
    (head_node,) = [n["node_id"] for n in list_nodes(head) if n["is_head_node"]]
    for name in ("Ingress", "JobRunner"):
        running = wait_until(lambda name=name: replicas(head, APP, name), 120, f"a running {name} replica")
        assert {r["node_id"] for r in running} == {head_node}, name

    with contextlib.ExitStack() as stack:
        workers: list[RayWorkerNode] = [
            stack.enter_context(start_ray_worker(head, num_cpus=1, resources={TTS_RESOURCE: 1})) for _ in range(2)
        ]
        running = wait_until(
            lambda: (found := replicas(head, APP, "TTSDeployment")) and len(found) == 2 and found,
            300,
            "two running TTS replicas",
        )
        by_node = {r["node_id"]: r["replica_id"] for r in running}
        assert set(by_node) == {w.node_id for w in workers}, "the TTS replicas are not one per worker node"
        assert post(f"{url}/tts", {"text": "Warm up."}, REQUEST_TIMEOUT_S)[0] == 200

        t0 = time.monotonic()
        job_ids = []
        for i in range(JOBS):
            status, body, _ = post(f"{url}/jobs", {"text": f"Job {i}. {JOB_TEXT}"}, 30)
            assert status == 202, body
            job_ids.append(json.loads(body)["id"])
        stop = threading.Event()
        outcomes: list[dict[str, Any]] = []
        clients = [
            threading.Thread(target=_speech_client, args=(url, i, stop, outcomes, t0), daemon=True)
            for i in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        time.sleep(LOAD_BEFORE_KILL_S)
        jobs_at_kill = {job_id: get(f"{url}/jobs/{job_id}")[1] for job_id in job_ids}
        victim = workers[0]
        killed_at = round(time.monotonic() - t0, 2)
        victim.kill()
        time.sleep(LOAD_AFTER_KILL_S)
        stop.set()
        for client in clients:
            client.join(timeout=REQUEST_TIMEOUT_S + 30)
        assert not any(client.is_alive() for client in clients), "a speech request hung past its timeout"

        finished = {}
        for job_id in job_ids:
            finished[job_id] = wait_until(
                lambda job_id=job_id: (
                    (r := get(f"{url}/jobs/{job_id}")[1])["status"] not in ("queued", "running") and r
                ),
                600,
                f"job {job_id} to end",
                interval_s=2.0,
            )
        after = [post(f"{url}/tts", {"text": f"After the fault {i}."}, REQUEST_TIMEOUT_S) for i in range(3)]
        survivors = replicas(head, APP, "TTSDeployment")

    in_flight_at_kill = [o for o in outcomes if o["sent_s"] <= killed_at < o["sent_s"] + o["took_s"]]
    record = {
        "injected": {
            "what": "SIGKILL to the whole process group of one worker node (raylet, agents, its TTS replica)",
            "node_id": victim.node_id,
            "tts_replica_on_it": by_node[victim.node_id],
            "at_s": killed_at,
        },
        "jobs_accepted": len(job_ids),
        "jobs_at_kill": {j: {k: r.get(k) for k in ("status", "progress")} for j, r in jobs_at_kill.items()},
        "jobs_final": {j: {k: r.get(k) for k in JOB_KEYS} for j, r in finished.items()},
        "speech_requests": len(outcomes),
        "speech_by_status": dict(sorted(Counter(str(o["status"]) for o in outcomes).items())),
        "speech_in_flight_at_kill": in_flight_at_kill,
        "speech_failed": [o for o in outcomes if o["status"] != 200],
        "after_fault_statuses": [status for status, _, _ in after],
        "tts_running_after": [{k: r[k] for k in ("replica_id", "node_id")} for r in survivors],
    }
    path = write_artifact("node_fault.json", record)
    summary = {k: v for k, v in record.items() if k != "speech_failed"}
    print(f"\nnode fault record ({path}):\n{json.dumps(summary, indent=1)}")

    lost = {j: r["status"] for j, r in finished.items() if r["status"] != "succeeded"}
    assert not lost, f"accepted jobs did not finish: {lost}"
    assert in_flight_at_kill, "no speech request was in flight when the node was killed"
    for outcome in outcomes:
        clean_error = outcome["content_type"] == "application/json" and "type" in outcome["error"]
        assert outcome["status"] == 200 or (500 <= outcome["status"] < 600 and clean_error), outcome
    # What the lost replica held is a 503 to retry, not an internal error.
    assert {o["error"]["type"] for o in record["speech_failed"]} <= {"replica_lost", "overloaded"}, outcomes
    assert [status for status, _, _ in after] == [200] * 3
    assert [r["node_id"] for r in survivors] == [workers[1].node_id]
