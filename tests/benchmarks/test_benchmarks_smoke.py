"""The benchmark runner end to end on one benchmark in quick mode (a private Ray in a subprocess).

Only the shape of what it writes is checked: tests never judge timings.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = {"benchmark", "quick", "started_at", "duration_s", "environment", "config", "metrics", "targets",
               "tables", "notes"}  # fmt: skip
TARGET_KEYS = {"name", "value", "target", "unit", "passed", "source"}
MODEL_KEYS = {"max_audio_tokens", "audio_seconds", "stored_ms", "uploaded_ms", "speedup_p50", "upload_added_ms_p50",
              "latents_computed_by_stored_requests"}  # fmt: skip


@pytest.mark.slow
def test_voice_cache_quick_run_writes_json_and_summary(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    command = [sys.executable, "-m", "benchmarks", "voice_cache", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"

    data = json.loads((tmp_path / "voice_cache.json").read_text(encoding="utf-8"))
    assert RESULT_KEYS <= data.keys()
    assert data["benchmark"] == "voice_cache"
    assert data["quick"] is True
    assert set(data["metrics"]["models"]) == {"tiny-xtts", "tiny-xtts-short"}
    for model in data["metrics"]["models"].values():
        assert MODEL_KEYS <= model.keys()
        assert model["stored_ms"]["n"] == model["uploaded_ms"]["n"] == data["config"]["rounds"]
    assert len(data["targets"]) == 2
    for target in data["targets"]:
        assert TARGET_KEYS <= target.keys()
        assert isinstance(target["passed"], bool)
    assert data["tables"] and data["tables"][0]["rows"]

    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "## voice_cache" in summary
    assert "stored-voice speed-up: tiny-xtts-short" in summary


@pytest.mark.slow
def test_training_step_quick_run_measures_both_methods(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks", "training_step", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"

    data = json.loads((tmp_path / "training_step.json").read_text(encoding="utf-8"))
    assert RESULT_KEYS <= data.keys()
    assert data["quick"] is True
    assert data["config"]["gpt"]["layers"] == 2
    methods = data["metrics"]["methods"]
    assert set(methods) == {"lora", "full", "lora+gc", "full+gc"}
    assert 0 < methods["lora"]["trainable_params"] < methods["full"]["trainable_params"]
    for method in methods.values():
        assert len(method["step_s"]) == data["config"]["timed_steps"]
        assert method["peak_rss_bytes"] >= method["rss_before_step_bytes"] > 0
        assert all(math.isfinite(loss) for loss in method["losses"])
    assert [target["name"] for target in data["targets"]] == [
        "LoRA / full peak RSS, gradient checkpointing off",
        "LoRA / full peak RSS, gradient checkpointing on",
    ]
    assert "## training_step" in (tmp_path / "summary.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_batching_quick_run_compares_batched_and_unbatched(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks", "batching", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"

    data = json.loads((tmp_path / "batching.json").read_text(encoding="utf-8"))
    assert RESULT_KEYS <= data.keys()
    assert data["quick"] is True and data["config"]["model"] in ("tiny", "release")
    levels = data["metrics"]["levels"]
    assert [level["concurrent"] for level in levels] == data["config"]["levels"]
    for level in levels:
        for mode in ("unbatched", "batched"):
            assert level[mode]["requests"] == level[mode]["latency_ms"]["n"] == level["concurrent"]
            assert level[mode]["audio_s"] > 0
            # HiFiGAN's time is clocked on both paths and is part of the wall time.
            assert 0 < level[mode]["vocoder_s"] <= level[mode]["wall_s"]
            assert level[mode]["decoding_s"] == pytest.approx(
                level[mode]["wall_s"] - level[mode]["vocoder_s"], abs=2e-3
            )
        assert level["decoding_ratio"] > 0 and level["vocoder_ratio"] > 0
        # Both paths make the same audio (same requests, same lengths), so audio seconds agree.
        assert level["batched"]["audio_s"] == pytest.approx(level["unbatched"]["audio_s"], abs=1e-2)
    assert 0 < data["metrics"]["vocoder_share_of_one_request"] <= 1
    assert data["tables"] and len(data["tables"][0]["rows"]) == len(levels)
    assert "## batching" in (tmp_path / "summary.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--levels", "1,x", "--levels takes comma-separated whole numbers"),
        ("--levels", "0,4", "--levels must be 1 or more each"),
        ("--tokens", "0", "--tokens must be 1 or more"),
        ("--tokens", "many", "--tokens takes a whole number"),
    ],
)
def test_batching_options_reject_bad_values(tmp_path: Path, option: str, value: str, message: str) -> None:
    command = [sys.executable, "-m", "benchmarks.batching", option, value, "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "batching.json").exists()


def _gpu_realsize(tmp_path: Path, *args: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.gpu_realsize", "--out", str(tmp_path), *args]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    data = json.loads((tmp_path / "gpu_realsize.json").read_text(encoding="utf-8"))
    assert RESULT_KEYS <= data.keys()
    return data


def test_gpu_realsize_skips_cleanly_without_cuda(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the benchmark measures instead of skipping")
    data = _gpu_realsize(tmp_path, "--quick")
    assert "no CUDA device" in data["config"]["skipped"]
    assert data["tables"] == [] and data["targets"] == [] and data["metrics"] == {}


@pytest.mark.slow
def test_gpu_realsize_measures_on_cpu_when_allowed(tmp_path: Path) -> None:
    data = _gpu_realsize(tmp_path, "--quick", "--allow-cpu", "--model", "tiny")
    metrics = data["metrics"]
    assert data["config"]["max_new_tokens"] == 20
    assert metrics["whole"]["audio_s"] > 0 and metrics["real_time_factor_p50"] > 0
    streamed = metrics["streamed"]
    assert 0 < streamed["first_audio_ms"]["p50_ms"] <= streamed["total_ms"]["p50_ms"]
    assert len(data["tables"][0]["rows"]) == 2
