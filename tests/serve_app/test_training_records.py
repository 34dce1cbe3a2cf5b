"""How a training run's record follows its runner when the runner is gone (no Ray needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_app import runs
from serve_app.training import service as training
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
    monkeypatch.setattr(runs, "actor_alive", lambda submission_id, namespace: False)
    run_dir = _run(tmp_path, progress_status)
    settings = Settings.load(storage_root=tmp_path)
    record = training.refresh(run_dir, settings)
    assert record["status"] == expected
    assert json.loads((run_dir / "job.json").read_text())["status"] == expected  # the outcome is saved
    if expected == "failed":
        assert "POST the same options again to resume" in record["error"]


def test_the_api_starts_runs_with_their_options_as_json(tmp_path: Path) -> None:
    from train_jobs.cli import _finetune_config, parser
    from train_jobs.config import FinetuneConfig

    config = FinetuneConfig(
        dataset="d",
        base_model="m",
        run_name="r",
        lora_targets=("c_attn", "c_fc"),
        test_sentences=("Hello, world.", "-dash first"),
        mixed_precision=False,
        lr=3e-5,
    )
    argv = training.cli_args(training.write_run_config(config, tmp_path))
    assert argv[:3] == ["-m", "train_jobs", "finetune"]
    args = parser().parse_args(argv[2:])
    assert args.config == str(tmp_path / "finetune.json") and args.dataset_in_storage
    loaded = _finetune_config(args)
    assert loaded == config.model_copy(update={"progress_bar": False})  # every field, exactly
    assert loaded.test_sentences == ("Hello, world.", "-dash first") and loaded.lora_targets == ("c_attn", "c_fc")
    assert json.loads((tmp_path / "finetune.json").read_text())["test_sentences"] == ["Hello, world.", "-dash first"]


def test_a_run_started_over_http_takes_its_dataset_from_storage_only(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.train_jobs.conftest import link_model, small_config
    from voice_core.errors import NotFoundError

    root = tmp_path / "storage"
    link_model(tiny_model_dir, root / "models")
    cwd = tmp_path / "service-cwd"
    (cwd / "tests").mkdir(parents=True)  # the service's own folder, not a dataset in storage
    (root / "tests").mkdir()  # the training command runs in the storage root
    settings = Settings.load(storage_root=root)
    for directory in (cwd, root):
        monkeypatch.chdir(directory)
        with pytest.raises(NotFoundError) as info:
            training.submit(small_config(dataset="tests"), settings)
        message = str(info.value)
        assert "dataset 'tests' does not exist in storage/datasets" in message
        assert str(tmp_path) not in message
    assert not (root / "runs" / "run").exists()  # nothing recorded, nothing started
