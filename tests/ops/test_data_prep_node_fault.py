"""A dataset build (``ray job submit -- python -m data_prep build``) that loses a worker node mid-run.

The head has no CPUs, so every Ray Data actor and task runs on the two worker nodes. The same
recordings are built twice on the same cluster: once undisturbed (the reference), once with the
node holding the transcriber actor killed (its whole process group) while the analysis runs. Ray
Data restarts the lost actors on the surviving node and re-runs lost tasks; the faulted build must
end with the same clips, transcripts and WAVs as the reference. The record is written to
``test-artifacts/ops/data_prep_node_fault.json``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.data_prep.corpus import MAIN_A, MAIN_B, MORE, speak_recording
from tests.ops.cluster import actors, wait_until, write_artifact
from tests.ray_head import JobResult, RayHead, RayWorkerNode, start_ray_head, start_ray_worker, submit_job

pytestmark = pytest.mark.slow

TRANSCRIBE_CPUS = 1.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[RayHead, list[RayWorkerNode]]]:
    with start_ray_head(num_cpus=0) as head, start_ray_worker(head, 2) as first, start_ray_worker(head, 2) as second:
        yield head, [first, second]


def _build(head: RayHead, recordings: Path, out: Path, storage: Path) -> JobResult:
    entrypoint = ["python", "-m", "data_prep", "build", "--input", str(recordings), "--output", str(out)]
    entrypoint += ["--language", "en", "--no-progress", "--transcribe-num-cpus", str(TRANSCRIBE_CPUS)]
    return submit_job(head, entrypoint, env_vars={"AVS_STORAGE_ROOT": str(storage)}, timeout_s=900)


def _transcriber_node(head: RayHead) -> str | None:
    """Node of the live Ray Data actor that reserves the transcriber's CPUs (the other stages take 0.25)."""
    for actor in actors(head, "state", "ALIVE"):
        if (
            "MapWorker" in actor.get("class_name", "")
            and actor.get("required_resources", {}).get("CPU") == TRANSCRIBE_CPUS
        ):
            return actor["node_id"]
    return None


def _dataset(out: Path) -> dict[str, Any]:
    metadata = (out / "metadata.csv").read_text(encoding="utf-8").splitlines()
    return {
        "kept": json.loads((out / "manifest.json").read_text())["kept"],
        "metadata": metadata,
        "wavs": sorted(p.name for p in (out / "wavs").glob("*.wav")),
    }


def test_build_survives_losing_the_node_of_its_transcriber(
    cluster: tuple[RayHead, list[RayWorkerNode]], tmp_path: Path
) -> None:
    head, workers = cluster
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for name, sentences in (("a", MAIN_A), ("b", MAIN_B), ("c", MORE + MAIN_A[:2])):
        speak_recording(recordings / f"talk-{name}.wav", sentences)
    storage = tmp_path / "storage"

    reference = _build(head, recordings, tmp_path / "reference", storage)
    assert reference.returncode == 0, reference.output[-3000:]

    out = tmp_path / "faulted"
    result: list[JobResult] = []
    runner = threading.Thread(target=lambda: result.append(_build(head, recordings, out, storage)), daemon=True)
    started = time.monotonic()
    runner.start()

    def analysing_on_a_worker() -> str | None:
        progress = out / "progress.json"
        if not progress.is_file() or json.loads(progress.read_text())["stage"] != "analysis":
            return None
        return _transcriber_node(head)

    node = wait_until(analysing_on_a_worker, 600, "the transcriber actor running during the analysis", 0.5)
    progress_at_kill = json.loads((out / "progress.json").read_text())
    (victim,) = [w for w in workers if w.node_id == node]
    killed_at = round(time.monotonic() - started, 1)
    victim.kill()
    runner.join(timeout=900)
    assert result, "the faulted build did not end"
    faulted = result[0]

    expected, got = _dataset(tmp_path / "reference"), (_dataset(out) if faulted.returncode == 0 else None)
    write_artifact(
        "data_prep_node_fault.json",
        {
            "injected": {
                "what": "SIGKILL to the process group of the node running the transcriber actor",
                "node_id": node,
                "at_s": killed_at,
                "progress_at_kill": progress_at_kill,
            },
            "faulted_returncode": faulted.returncode,
            "took_s": round(time.monotonic() - started, 1),
            "reference_kept": expected["kept"],
            "faulted_kept": got["kept"] if got else None,
            "same_dataset": got == expected,
        },
    )
    assert faulted.returncode == 0, faulted.output[-4000:]
    assert expected["kept"] >= 8
    assert got == expected
    assert [w.node_id for w in workers if w.process.poll() is None] == [w.node_id for w in workers if w is not victim]
