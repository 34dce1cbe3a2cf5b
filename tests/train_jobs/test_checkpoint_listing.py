"""A run's checkpoints come from the one listing (``voice_core.checkpoints``), the same for CLI, export and API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from train_jobs.cli import main
from train_jobs.export import pick_checkpoint
from voice_core.checkpoints import TRAINING_COLUMNS, list_checkpoints, training_checkpoints
from voice_core.errors import InvalidInputError, NotFoundError
from voice_core.storage import Storage


def _checkpoint(run_dir: Path, step: int, eval_loss: float, *, lora: bool = False) -> Path:
    directory = run_dir / f"checkpoint_step{step:07d}"
    directory.mkdir(parents=True)
    if lora:
        (directory / "adapter_config.json").write_text("{}", encoding="utf-8")
        (directory / "adapter_model.safetensors").write_bytes(b"not really")
    else:
        torch.save({"model": {"w": torch.zeros(1)}}, directory / "model.pth")
    torch.save({"step": step}, directory / "training_state.pt")
    record = {"step": step, "epoch": 1, "eval_loss": eval_loss, "train_loss": 1.0, "epoch_end": False}
    (directory / "avs_checkpoint.json").write_text(json.dumps(record), encoding="utf-8")
    return directory


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    storage = Storage(tmp_path / "storage").ensure()
    run_dir = storage.run_dir("r")
    _checkpoint(run_dir, 4, 0.5)
    _checkpoint(run_dir, 2, 0.7, lora=True)
    _checkpoint(run_dir, 6, 0.6)
    being_written = run_dir / "checkpoint_step0000008"
    being_written.mkdir()
    torch.save({}, being_written / "model.pth")  # no record yet
    _checkpoint(storage.run_dir("other"), 9, 0.1)
    return storage


def test_a_runs_checkpoints_are_rows_of_the_listing(storage: Storage) -> None:
    rows = training_checkpoints(storage.root, "r")
    assert [row["name"] for row in rows] == [f"checkpoint_step000000{n}" for n in (2, 4, 6)]
    assert rows[0]["path"] == str(storage.run_dir("r") / "checkpoint_step0000002") and rows[1]["eval_loss"] == 0.5
    listed = {entry.path for entry in list_checkpoints(storage.root, run="r")}
    assert listed <= {entry.path for entry in list_checkpoints(storage.root)}
    assert all(path.startswith("runs/r/") for path in listed)
    assert training_checkpoints(storage.root, "absent") == []
    with pytest.raises(InvalidInputError):
        training_checkpoints(storage.root, "../models")


def test_export_picks_from_the_same_rows(storage: Storage) -> None:
    run_dir = storage.run_dir("r")
    assert pick_checkpoint(storage, run_dir, "best")["name"] == "checkpoint_step0000004"
    assert pick_checkpoint(storage, run_dir, "latest")["name"] == "checkpoint_step0000006"
    with pytest.raises(NotFoundError, match="checkpoint_step0000002, checkpoint_step0000004"):
        pick_checkpoint(storage, run_dir, "checkpoint_step0000008")


def test_cli_prints_the_listing_columns(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AVS_STORAGE_ROOT", str(storage.root))
    assert main(["checkpoints", "--run", "r"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == list(TRAINING_COLUMNS)
    assert [line.split()[:3] for line in lines] == [
        [row["name"], str(row["step"]), "1"] for row in training_checkpoints(storage.root, "r")
    ]
