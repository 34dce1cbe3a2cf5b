"""A 2-worker training run (``ray job submit -- python -m train_jobs finetune``) that loses a node.

The head has no CPUs (it holds the job's driver and Ray Train's controller, which Ray pins to the
driver's node); two worker nodes of 2 CPUs each hold the training workers (1 CPU each). After the
first checkpoint is committed, the node of rank 0 is killed (its whole process group). With
``--max-failures 1`` Ray Train starts the worker group again where there is room and resumes from the
latest checkpoint; the run must finish with every step done. The record is written to
``test-artifacts/ops/train_node_fault.json``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.cluster import actors, wait_until, write_artifact
from tests.ray_head import JobResult, RayHead, RayWorkerNode, start_ray_head, start_ray_worker, submit_job
from tests.train_jobs.test_runs import committed_steps
from train_jobs.progress import read_progress

pytestmark = pytest.mark.slow

# Enough steps that the kill lands mid-run: finding rank 0's node after the first commit takes seconds,
# and the tiny model runs several steps in that time (with 4 epochs a run once reached its last step first).
EPOCHS = 10
STEPS = 2 * EPOCHS  # 6 training clips over 2 workers, batch 2: 2 steps per epoch


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[RayHead, list[RayWorkerNode]]]:
    with start_ray_head(num_cpus=0) as head, start_ray_worker(head, 2) as first, start_ray_worker(head, 2) as second:
        yield head, [first, second]


def _node_of_pid(head: RayHead, pid: int) -> str | None:
    found = actors(head, "pid", str(pid))
    return found[0]["node_id"] if found else None


def test_two_worker_run_resumes_after_losing_a_node(
    cluster: tuple[RayHead, list[RayWorkerNode]], train_storage_root: Path
) -> None:
    head, workers = cluster
    directory = train_storage_root / "runs" / "node-fault"
    entrypoint = ["python", "-m", "train_jobs", "finetune", "--dataset", "speaker", "--base-model", "tiny-xtts"]
    entrypoint += ["--run-name", "node-fault", "--epochs", str(EPOCHS), "--batch-size", "2", "--lr", "0.001"]
    entrypoint += ["--min-audio-s", "1", "--num-workers", "2", "--cpus-per-worker", "1", "--max-failures", "1"]
    entrypoint += ["--checkpoint-every-steps", "2", "--no-progress-bar"]
    result: list[JobResult] = []
    runner = threading.Thread(
        target=lambda: result.append(
            submit_job(head, entrypoint, env_vars={"AVS_STORAGE_ROOT": str(train_storage_root)}, timeout_s=900)
        ),
        daemon=True,
    )
    started = time.monotonic()
    runner.start()

    wait_until(lambda: any(step >= 2 for step in committed_steps(directory)), 600, "the first committed checkpoint")
    first_pid = json.loads((directory / "workers" / "rank_0.json").read_text())["pid"]
    node = wait_until(lambda: _node_of_pid(head, first_pid), 60, "the node of rank 0")
    (victim,) = [w for w in workers if w.node_id == node]
    killed_at = round(time.monotonic() - started, 1)
    victim.kill()
    # What the run had reached when rank 0 died. Read after the kill: training runs on until then, and
    # progress.json's step is written at most once a second, so a checkpoint can be committed after the
    # last step written there. A checkpoint both workers reported just before the kill may still be
    # recorded by the controller, so it gets a moment before the record is read.
    time.sleep(2)
    committed_at_kill = committed_steps(directory)
    step_at_kill = max([read_progress(directory)["step"], *committed_at_kill])
    runner.join(timeout=900)
    assert result, "the run did not end"
    progress = read_progress(directory)
    restarted_pid = json.loads((directory / "workers" / "rank_0.json").read_text())["pid"]
    write_artifact(
        "train_node_fault.json",
        {
            "injected": {
                "what": "SIGKILL to the process group of the node of training rank 0",
                "node_id": node,
                "at_s": killed_at,
                "step_at_kill": step_at_kill,
                "committed_steps_at_kill": committed_at_kill,
            },
            "job_returncode": result[0].returncode,
            "took_s": round(time.monotonic() - started, 1),
            "status": progress.get("status"),
            "step": progress.get("step"),
            "total_steps": progress.get("total_steps"),
            "resumes": progress.get("resumes"),
        },
    )
    assert result[0].returncode == 0, result[0].output[-4000:]
    assert step_at_kill < STEPS, "the run reached its last step before the node was killed"
    assert progress["status"] == "finished" and progress["step"] == progress["total_steps"] == STEPS, progress
    # It resumed from the latest checkpoint committed before the node died (not from scratch, not later).
    assert progress["resumes"] and progress["resumes"][0]["step"] == max(committed_at_kill) >= 2, (
        progress["resumes"],
        committed_at_kill,
    )
    assert restarted_pid != first_pid
    assert (directory / "samples" / f"epoch_{EPOCHS}.wav").is_file()
