"""``ray job submit -- python -m data_prep build ...`` against a real ``ray start --head`` cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data_prep.corpus import MAIN_A, speak_recording
from tests.ray_head import RayHead, job_info, job_status, submit_job

pytestmark = pytest.mark.slow


def test_build_runs_as_a_ray_job(ray_head: RayHead, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    speak_recording(recordings / "talk.wav", MAIN_A[:4])
    out = tmp_path / "datasets" / "voice"
    entrypoint = ["python", "-m", "data_prep", "build", "--input", str(recordings), "--output", str(out)]
    entrypoint += ["--language", "en", "--no-progress"]

    job = submit_job(ray_head, entrypoint, env_vars={"AVS_STORAGE_ROOT": str(tmp_path / "storage")})

    assert job.returncode == 0, job.output[-3000:]
    assert job_status(ray_head, job.submission_id, wait_s=30) == "SUCCEEDED", job_info(ray_head, job.submission_id)
    assert "clips kept" in job.output  # the CLI's summary reaches the job's logs
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kept"] >= 3 and manifest["placement"]["device"] == "cpu"
    lines = (out / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == manifest["kept"]
    assert sorted(p.stem for p in (out / "wavs").glob("*.wav")) == sorted(line.split("|")[0] for line in lines)
    assert json.loads((out / "progress.json").read_text())["stage"] == "done"
