"""The one run lifecycle (serve_app.runs.ManagedRun) on the records training runs and dataset builds store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from serve_app import runs
from serve_app.datasets.builds import BUILDS
from serve_app.training.service import RUNS
from voice_core.settings import Settings
from voice_core.status import Status


def _record(directory: Path, record_file: str, **fields: object) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    record = {"job_id": "sub-1", "runner": "ray_task", **fields}
    (directory / record_file).write_text(json.dumps(record))
    return record


def test_each_kind_keeps_its_own_status_words() -> None:
    assert [RUNS.word(s) for s in Status] == ["queued", "running", "finished", "failed", "stopped"]
    assert [BUILDS.word(s) for s in Status] == ["building", "building", "ready", "failed", "failed"]
    assert BUILDS.state({"status": "building"}) == Status.QUEUED and BUILDS.active({"status": "building"})
    assert RUNS.state({"status": "finished"}) == Status.SUCCEEDED and not RUNS.active({"status": "finished"})
    assert BUILDS.state({"status": "failed"}) == Status.FAILED  # the first status with the word


def test_a_stored_build_whose_actor_vanished_fails_in_its_own_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "actor_alive", lambda submission_id, namespace: False)
    directory = tmp_path / "ds"
    record = _record(directory, "build.json", name="ds", status="building", job_status="RUNNING")
    refreshed = BUILDS.refresh(directory, record, Settings.load(storage_root=tmp_path))
    stored = json.loads((directory / "build.json").read_text())
    assert refreshed["status"] == stored["status"] == "failed" and stored["job_status"] == "FAILED"
    assert "POST the dataset again" in stored["error"] and stored["finished_at"]


@pytest.mark.parametrize(
    ("run", "record_file", "ok", "failed"),
    [(RUNS, "job.json", "finished", "failed"), (BUILDS, "build.json", "ready", "failed")],
)
def test_the_actor_finish_records_the_outcome_unless_replaced(
    tmp_path: Path, run: runs.ManagedRun, record_file: str, ok: str, failed: str
) -> None:
    _record(tmp_path, record_file, status=run.word(Status.QUEUED))
    runs.Finish(run, str(tmp_path), "sub-1")(0)
    assert json.loads((tmp_path / record_file).read_text())["status"] == ok
    _record(tmp_path, record_file, status=run.word(Status.QUEUED))
    (tmp_path / run.log_file).write_text("loading\nerror: dataset 'x' has no clips\n")
    runs.Finish(run, str(tmp_path), "sub-1")(2)
    stored = json.loads((tmp_path / record_file).read_text())
    assert stored["status"] == failed and stored["exit_status"] == 2 and stored["error"] == "dataset 'x' has no clips"
    runs.Finish(run, str(tmp_path), "sub-0")(0)  # an older submission: the newer record stays
    assert json.loads((tmp_path / record_file).read_text())["exit_status"] == 2


def test_a_record_never_handed_to_a_runner_is_given_up(tmp_path: Path) -> None:
    record = _record(tmp_path, "job.json", status="queued", runner=None, submitted_at=time.time() - 3600)
    refreshed = RUNS.refresh(tmp_path, record, Settings.load(storage_root=tmp_path))
    assert refreshed["status"] == "failed" and "never started" in refreshed["error"]
    fresh = _record(tmp_path, "job.json", status="queued", runner=None, submitted_at=time.time())
    assert RUNS.refresh(tmp_path, fresh, Settings.load(storage_root=tmp_path))["status"] == "queued"
