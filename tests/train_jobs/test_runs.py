"""Whole runs on the session's local Ray cluster: LoRA and full, resume after a kill, worker restart, DDP, search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.train_jobs.conftest import small_config
from train_jobs.export import export_run
from train_jobs.progress import read_progress
from train_jobs.runner import finetune
from voice_core.checkpoints import training_checkpoints
from voice_core.settings import Settings
from voice_core.xtts_model import load_xtts

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def run_dir(settings: Settings, name: str = "run") -> Path:
    return Path(settings.storage_root) / "runs" / name


def checkpoints_of(run_dir: Path) -> list[dict]:
    """The checkpoints of the run in ``run_dir`` (``<storage root>/runs/<run>``)."""
    return training_checkpoints(run_dir.parent.parent, run_dir.name)


def assert_complete(directory: Path, total_steps: int, epochs: int) -> dict:
    progress = read_progress(directory)
    assert progress is not None and progress["status"] == "finished", progress
    assert progress["step"] == progress["total_steps"] == total_steps
    assert [p["epoch"] for p in progress["samples"]] == list(range(1, epochs + 1))
    for epoch in range(1, epochs + 1):
        sample = directory / "samples" / f"epoch_{epoch}.wav"
        assert sample.is_file() and sample.stat().st_size > 10_000
    assert list((directory / "tensorboard").glob("events.out.tfevents.*"))
    checkpoints = checkpoints_of(directory)
    assert checkpoints and checkpoints[-1]["step"] == total_steps
    return progress


def test_lora_run_completes(ray_session: int, train_settings: Settings) -> None:
    import threading

    import httpx

    from tests.serve_app.test_speech_api import exported

    seen: dict[str, float] = {}
    done = threading.Event()

    scrapes: list[str] = []  # what each scrape got, for the failure message

    def scrape() -> None:  # gauges live while the worker does (about two export intervals more): read them now
        while not done.wait(1.0):
            try:
                text = httpx.get(f"http://127.0.0.1:{ray_session}/metrics", timeout=30).text
            except httpx.HTTPError as error:
                scrapes.append(type(error).__name__)
                continue
            scrapes.append(f"{len(text)} chars")
            for key, value in (
                ("step", exported(text, "avs_training_step", run="run")),
                ("train", exported(text, "avs_training_loss", run="run", split="train")),
                ("eval", exported(text, "avs_training_loss", run="run", split="eval")),
            ):
                seen[key] = max(seen.get(key, 0.0), value)

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    try:
        summary = finetune(small_config(method="lora"), train_settings)
    finally:
        done.set()
        scraper.join(10)
    directory = run_dir(train_settings)
    progress = assert_complete(directory, total_steps=6, epochs=2)
    assert summary["step"] == 6 and summary["resumed"] is False
    assert len(progress["eval_loss_history"]) == 4  # steps 2, 3 (epoch end), 4, 6 (epoch end)
    latest = Path(summary["checkpoint"])
    assert (latest / "adapter_model.safetensors").is_file() and (latest / "adapter_config.json").is_file()
    assert json.loads((latest / "avs_adapter.json").read_text())["base_model"] == "tiny-xtts"
    assert not (latest / "model.pth").exists()  # LoRA checkpoints hold the adapter only
    assert (
        len(training_checkpoints(directory.parent.parent, directory.name)) <= 3 + 1
    )  # keep_checkpoints best ones, plus the latest
    # Exported through Ray's Prometheus endpoint while the run went on.
    assert seen.get("step", 0) >= 2 and seen.get("train", 0) > 0 and seen.get("eval", 0) > 0, (seen, scrapes)


def test_full_run_completes(ray_session: int, train_settings: Settings) -> None:
    summary = finetune(small_config(method="full", epochs=1, checkpoint_every_steps=0), train_settings)
    assert_complete(run_dir(train_settings), total_steps=3, epochs=1)
    assert (Path(summary["checkpoint"]) / "model.pth").is_file()
    exported = export_run(train_settings, "run", model_id="full-export")
    assert exported["kind"] == "full" and exported["step"] == 3
    model_dir = Path(exported["directory"])
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["base_model"] == "tiny-xtts" and manifest["training_config"]["method"] == "full"
    assert not (model_dir / "dvae.pth").exists()  # compaction: inference files only
    model, _ = load_xtts(model_dir, device="cpu")
    trained = torch.load(Path(summary["checkpoint"]) / "model.pth", weights_only=True)["model"]
    key = "gpt.mel_head.weight"
    base = torch.load(Path(train_settings.storage_root) / "models" / "tiny-xtts" / "model.pth", weights_only=True)
    assert torch.equal(model.state_dict()[key], trained[key])  # the trained weights...
    assert not torch.equal(trained[key], base["model"][key])  # ...which differ from the base's


def _cli(settings: Settings, name: str, *extra: str) -> list[str]:
    import ray

    address = ray.get_runtime_context().gcs_address
    return [
        sys.executable,
        "-m",
        "train_jobs",
        "--address",
        address,
        "finetune",
        "--dataset",
        "speaker",
        "--base-model",
        "tiny-xtts",
        "--run-name",
        name,
        "--epochs",
        "3",
        "--batch-size",
        "2",
        "--lr",
        "0.001",
        "--checkpoint-every-steps",
        "2",
        "--min-audio-s",
        "1",
        "--cpus-per-worker",
        "1",
        "--max-failures",
        "0",
        "--no-progress-bar",
        *extra,
    ]


def committed_steps(directory: Path) -> list[int]:
    """Steps of the checkpoints Ray Train has committed (its controller's snapshot), which a restart resumes from."""
    try:
        snapshot = json.loads((directory / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):
        return []
    return [r["metrics"]["step"] for r in snapshot.get("checkpoint_results", [])]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_run_resumes_with_the_same_command(ray_session: int, train_settings: Settings) -> None:
    env = dict(os.environ, AVS_STORAGE_ROOT=str(train_settings.storage_root))
    directory = run_dir(train_settings, "killed")
    command = _cli(train_settings, "killed")
    first = subprocess.Popen(
        command, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(lambda: any(step >= 4 for step in committed_steps(directory)), 240, "a checkpoint at step 4")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and its whole session, mid-run
        first.wait(30)
    killed_at = read_progress(directory)["step"]
    assert killed_at < 9, "the run finished before it was killed; nothing to resume"
    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout[second.stdout.index("{") :])
    assert summary["resumed"] is True
    progress = assert_complete(directory, total_steps=9, epochs=3)
    resumed_from = progress["resumes"][-1]["step"]
    assert 4 <= resumed_from <= killed_at  # from the latest committed checkpoint, not from scratch
    steps = [point[0] for point in progress["train_loss_history"]]
    assert steps == list(range(1, 10))  # every step exactly once: nothing skipped, nothing counted twice


def test_killed_worker_restarts_from_checkpoint(ray_session: int, train_settings: Settings) -> None:
    import threading

    directory = run_dir(train_settings)
    killed: list[int] = []

    def kill_worker_after_checkpoint() -> None:
        _wait(lambda: any(step >= 2 for step in committed_steps(directory)), 240, "the first checkpoint")
        pid = json.loads((directory / "workers" / "rank_0.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_worker_after_checkpoint, daemon=True)
    killer.start()
    finetune(small_config(epochs=3, max_failures=1), train_settings)
    killer.join(5)
    assert killed, "the worker was never killed"
    progress = assert_complete(directory, total_steps=9, epochs=3)
    assert progress["resumes"] and progress["resumes"][0]["step"] >= 2
    restarted = json.loads((directory / "workers" / "rank_0.json").read_text())["pid"]
    assert restarted != killed[0]


def test_two_worker_ddp_run(ray_session: int, train_settings: Settings) -> None:
    finetune(small_config(num_workers=2, epochs=2, checkpoint_every_steps=0), train_settings)
    directory = run_dir(train_settings)
    # 6 clips over 2 workers = 3 each; batch 2 -> 2 steps per epoch; 2 epochs.
    assert_complete(directory, total_steps=4, epochs=2)
    ranks = sorted(json.loads(p.read_text())["rank"] for p in (directory / "workers").glob("rank_*.json"))
    assert ranks == [0, 1]


def test_search_runs_two_trials(ray_session: int, train_settings: Settings) -> None:
    from train_jobs.search import search

    base = small_config(run_name="sweep", epochs=1, checkpoint_every_steps=0, cpus_per_worker=0.5)
    summary = search(base, {"lr": [1e-4, 1e-3]}, train_settings, max_concurrent=2)
    assert len(summary["trials"]) == 2
    assert all(t["error"] is None and t["steps"] == 3 for t in summary["trials"]), summary["trials"]
    best = summary["best"]
    assert best["best_eval_loss"] == min(t["best_eval_loss"] for t in summary["trials"])
    saved = json.loads((run_dir(train_settings, "sweep") / "search.json").read_text())
    assert saved["best"]["run_name"] == best["run_name"]
    for trial in summary["trials"]:
        assert read_progress(run_dir(train_settings, trial["run_name"]))["status"] == "finished"
