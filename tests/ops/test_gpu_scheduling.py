"""GPU scheduling of the TTS deployment with logical GPUs, on a machine without CUDA.

A private node advertises one logical GPU (``ray start --num-gpus=1``); Ray schedules on it as on a
real one. With ``num_gpus: 0.5`` per replica and three replicas asked for, two replicas share the GPU
and the third waits for resources. Each running replica was assigned GPU 0 by Ray, sees no CUDA device
and therefore runs its model on CPU, and says so in ``/health/engines``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for_http
from tests.ops.cluster import (
    actor_state,
    deploy,
    deployment,
    get,
    ops_app_args,
    post,
    replicas,
    storage_with_tiny_model,
    wait_until,
    write_artifact,
)
from tests.ray_head import RayHead, list_nodes, start_ray_head

pytestmark = pytest.mark.slow

APP = "voice-gpu"
# Long enough for Serve to have tried (and failed) to place the third replica several times.
SETTLE_S = 15.0
ENGINE_KEYS = ("device", "gpu_ids", "cuda_available")


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    with start_ray_head(num_cpus=2, num_gpus=1) as started:
        yield started


def test_half_gpu_replicas_pack_two_on_one_gpu_and_run_on_cpu_without_cuda(
    head: RayHead, tiny_model_dir: Path, tmp_path: Path
) -> None:
    storage = storage_with_tiny_model(tmp_path, tiny_model_dir)
    port = free_port()
    tts = {"num_cpus": 0.25, "num_gpus": 0.5, "autoscaling": {"min_replicas": 3, "max_replicas": 3}}
    deploy(head, port, APP, ops_app_args(storage, tts))
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", 240)
    wait_until(lambda: len(replicas(head, APP, "TTSDeployment")) >= 2, 240, "two running TTS replicas")
    time.sleep(SETTLE_S)

    details = deployment(head, APP, "TTSDeployment")
    assert details is not None
    running = [r for r in details["replicas"] if r["state"] == "RUNNING"]
    waiting = [r for r in details["replicas"] if r["state"] != "RUNNING"]
    assert details["target_num_replicas"] == 3
    assert len(running) == 2, details["replicas"]
    assert len(waiting) == 1 and not waiting[0].get("node_id"), waiting  # never placed on a node
    # Its actor waits for resources (0.5 GPU) rather than being slow to start.
    pending_state = actor_state(head, waiting[0]["actor_name"])
    assert pending_state == "PENDING_CREATION", pending_state
    (gpu_node,) = [n["node_id"] for n in list_nodes(head) if n["resources_total"].get("GPU")]
    assert {r["node_id"] for r in running} == {gpu_node}

    # Each /health/engines call is answered by one replica: ask until both running ones have answered.
    seen: dict[str, dict] = {}

    def both_answered() -> bool:
        status, body = get(f"{url}/health/engines")
        assert status == 200, body
        seen[body["TTSDeployment"]["replica"]] = body["TTSDeployment"]
        return len(seen) == 2

    wait_until(both_answered, 120, "both running replicas answering /health/engines", interval_s=0.2)
    assert set(seen) == {r["replica_id"] for r in running}
    for info in seen.values():
        assert info["gpu_ids"] == ["0"], info  # both packed on the node's one GPU
        assert info["cuda_available"] is False
        assert info["device"] == "cpu"

    spoken = [post(f"{url}/tts", {"text": f"Replica check {i}."}, 180) for i in range(4)]
    assert [(status, kind) for status, _, kind in spoken] == [(200, "audio/wav")] * 4
    assert all(len(body) > 1000 for _, body, _ in spoken)

    write_artifact(
        "gpu_scheduling.json",
        {
            "node_gpus": 1,
            "tts_num_gpus": 0.5,
            "replicas_asked": 3,
            "replicas": [{k: r.get(k) for k in ("replica_id", "state", "node_id")} for r in details["replicas"]],
            "waiting_replica_actor_state": pending_state,
            "deployment_status": details.get("status"),
            "deployment_message": details.get("message"),
            "engines": {rid: {k: info[k] for k in ENGINE_KEYS} for rid, info in seen.items()},
        },
    )
