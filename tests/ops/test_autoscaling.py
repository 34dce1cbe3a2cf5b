"""Serve autoscaling of the TTS deployment under real HTTP load, on a private cluster.

The cluster is private (not the session Ray) because Serve reads its autoscaling metric push
intervals from the environment of its processes: the head is started with them shortened from 10 s
to 0.5 s, and the delays of the autoscaling config are shortened to seconds. The timeline (seconds
since the load started -> running and target TTS replicas) is printed and written to
``test-artifacts/ops/autoscaling_timeline.json``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for_http
from tests.ops.cluster import deploy, deployment, ops_app_args, post, storage_with_tiny_model, write_artifact
from tests.ray_head import RayHead, start_ray_head

pytestmark = pytest.mark.slow

APP = "voice-autoscale"
MIN_REPLICAS, MAX_REPLICAS = 1, 3
CLIENTS = 6
LOAD_MIN_S, LOAD_MAX_S = 20.0, 150.0
SCALE_DOWN_TIMEOUT_S = 180.0
METRIC_PUSH_S = "0.5"


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    env = {
        "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": METRIC_PUSH_S,
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": METRIC_PUSH_S,
    }
    # 3 TTS replicas x 0.5 CPU + ingress + job runner fit in 2 logical CPUs.
    with start_ray_head(num_cpus=2, extra_env=env) as started:
        yield started


def _sample(head: RayHead, started: float) -> dict[str, object]:
    details = deployment(head, APP, "TTSDeployment") or {"replicas": [], "target_num_replicas": None}
    states = Counter(r["state"] for r in details["replicas"])
    return {
        "t_s": round(time.monotonic() - started, 1),
        "running": states.get("RUNNING", 0),
        "target": details.get("target_num_replicas"),
        "states": dict(states),
    }


def test_tts_scales_out_under_load_and_back_in_after(head: RayHead, tiny_model_dir: Path, tmp_path: Path) -> None:
    storage = storage_with_tiny_model(tmp_path, tiny_model_dir)
    port = free_port()
    tts = {
        "num_cpus": 0.5,
        "max_ongoing_requests": 2,
        "max_queued_requests": 100,
        "autoscaling": {
            "min_replicas": MIN_REPLICAS,
            "max_replicas": MAX_REPLICAS,
            "target_ongoing_requests": 1,
            "upscale_delay_s": 1,
            "downscale_delay_s": 5,
        },
    }
    deploy(head, port, APP, ops_app_args(storage, tts))
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", 240)
    assert post(f"{url}/tts", {"text": "Warm up."}, 120)[0] == 200

    stop = threading.Event()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client(index: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            status = post(f"{url}/tts", {"text": f"Client {index} says sentence number {n}."}, 300)[0]
            with lock:
                statuses[status] += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    timeline = []
    while True:
        timeline.append({"phase": "load", **_sample(head, started)})
        elapsed = time.monotonic() - started
        if (elapsed >= LOAD_MIN_S and timeline[-1]["running"] > MIN_REPLICAS) or elapsed >= LOAD_MAX_S:
            break
        time.sleep(1.0)
    stop.set()
    load_stopped = round(time.monotonic() - started, 1)
    while True:
        # Clients finish the request they have in flight ("drain"), then no request is sent ("idle").
        phase = "drain" if any(thread.is_alive() for thread in threads) else "idle"
        timeline.append({"phase": phase, **_sample(head, started)})
        if phase == "idle" and timeline[-1]["states"] == {"RUNNING": MIN_REPLICAS}:  # none starting or stopping
            break
        if time.monotonic() - started - load_stopped > SCALE_DOWN_TIMEOUT_S:
            break
        time.sleep(1.0)

    peak = max(point["running"] for point in timeline if point["phase"] == "load")
    back = {"RUNNING": MIN_REPLICAS}
    record = {
        "config": tts["autoscaling"],
        "metric_push_interval_s": float(METRIC_PUSH_S),
        "clients": CLIENTS,
        "load_stopped_at_s": load_stopped,
        "requests_by_status": {str(k): v for k, v in sorted(statuses.items())},
        "peak_running_under_load": peak,
        "first_above_min_at_s": next((p["t_s"] for p in timeline if p["running"] > MIN_REPLICAS), None),
        "peak_running": max(point["running"] for point in timeline),
        "back_to_min_at_s": timeline[-1]["t_s"] if phase == "idle" and timeline[-1]["states"] == back else None,
        "timeline": timeline,
    }
    path = write_artifact("autoscaling_timeline.json", record)
    print(f"\nautoscaling timeline ({path}):")
    for point in timeline:
        print(f"  {point['t_s']:7.1f}s {point['phase']:5} running={point['running']} target={point['target']}")

    assert set(statuses) == {200}, f"load requests failed: {dict(statuses)}"
    assert peak > MIN_REPLICAS, f"never scaled above {MIN_REPLICAS} replica under load: {timeline}"
    assert record["back_to_min_at_s"] is not None, f"did not scale back to {MIN_REPLICAS} after the load"
    assert not any(thread.is_alive() for thread in threads), "a load request never returned"
