"""``ray job submit -- python -m train_jobs finetune ...`` against a private ``ray start --head`` cluster,
and the API's Ray Job runner (``serve_app.training.service``) against the same cluster's Jobs API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ray_head import RayHead, start_ray_head, submit_job
from train_jobs.progress import read_progress
from voice_core.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    with start_ray_head(num_cpus=2) as head:
        yield head


@pytest.fixture
def storage_root(train_storage_root: Path) -> Path:
    return train_storage_root


ARGS = [
    "--dataset",
    "speaker",
    "--base-model",
    "tiny-xtts",
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--lr",
    "0.001",
    "--min-audio-s",
    "1",
    "--cpus-per-worker",
    "1",
    "--checkpoint-every-steps",
    "0",
    "--no-progress-bar",
]


def test_cli_under_ray_job_submit(ray_head: RayHead, storage_root: Path) -> None:
    result = submit_job(
        ray_head,
        ["python", "-m", "train_jobs", "finetune", "--run-name", "submitted", *ARGS],
        env_vars={"AVS_STORAGE_ROOT": str(storage_root)},
    )
    assert result.returncode == 0, result.output[-4000:]
    progress = read_progress(storage_root / "runs" / "submitted")
    assert progress["status"] == "finished" and progress["step"] == progress["total_steps"] == 3
    assert (storage_root / "runs" / "submitted" / "samples" / "epoch_1.wav").is_file()
    summary = json.loads(result.output[result.output.index('{\n  "run_name"') :].split("\n}\n")[0] + "\n}")
    assert summary["run_name"] == "submitted" and summary["step"] == 3


def test_api_runner_submits_through_the_jobs_api(
    ray_head: RayHead, storage_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serve_app.training import service as training
    from train_jobs.config import FinetuneConfig
    from voice_core.storage import Storage

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    settings = Settings.load(storage_root=storage_root, dashboard_address=ray_head.dashboard_url)
    config = FinetuneConfig(
        dataset="speaker",
        base_model="tiny-xtts",
        run_name="via-api",
        epochs=1,
        batch_size=2,
        lr=1e-3,
        min_audio_s=1,
        cpus_per_worker=1,
        checkpoint_every_steps=0,
    )
    view = training.submit(config, settings)
    assert view["runner"] == "ray_job" and view["job_id"].startswith("train-via-api-")
    storage = Storage.from_settings(settings)
    deadline = time.monotonic() + 400
    while view["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(2)
        view = training.describe(storage, "via-api", settings)
    assert view["status"] == "finished", view
    assert view["job_status"] == "SUCCEEDED" and view["step"] == 3
    assert view["logs_tail"] and "via-api" in view["logs_tail"]
