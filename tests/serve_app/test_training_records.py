"""How a training run's record follows its runner when the runner is gone (no Ray needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_app import ray_jobs, training
from voice_core.settings import Settings


def _run(tmp_path: Path, progress_status: str) -> Path:
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"identity": {"method": "lora"}}))
    (run_dir / "job.json").write_text(json.dumps({"job_id": "train-r-1", "status": "queued", "runner": "ray_task"}))
    (run_dir / "progress.json").write_text(json.dumps({"status": progress_status, "step": 3, "total_steps": 9}))
    return run_dir


@pytest.mark.parametrize(("progress_status", "expected"), [("finished", "finished"), ("running", "failed")])
def test_a_vanished_actor_is_judged_by_the_runs_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, progress_status: str, expected: str
) -> None:
    monkeypatch.setattr(ray_jobs, "actor_alive", lambda job_id, namespace: False)
    run_dir = _run(tmp_path, progress_status)
    settings = Settings.load(storage_root=tmp_path)
    record = training.refresh(run_dir, json.loads((run_dir / "job.json").read_text()), settings)
    assert record["status"] == expected
    assert json.loads((run_dir / "job.json").read_text())["status"] == expected  # the outcome is saved
    if expected == "failed":
        assert "POST the same options again to resume" in record["error"]


def test_cli_arguments_reproduce_the_options() -> None:
    from train_jobs.cli import _config_values, parser
    from train_jobs.config import FinetuneConfig

    config = FinetuneConfig(
        dataset="d", base_model="m", run_name="r", lora_targets=("c_attn", "c_fc"), mixed_precision=False, lr=3e-5
    )
    argv = training.cli_args(config)
    assert argv[:3] == ["-m", "train_jobs", "finetune"] and argv[-1] == "--no-progress-bar"
    parsed = FinetuneConfig(**_config_values(parser().parse_args(argv[2:])))
    assert parsed.identity() == config.identity()
