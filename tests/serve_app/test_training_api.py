"""Training over HTTP on the real service: bad requests, a LoRA run started by the API, export -> serve."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import httpx
import pytest
import soundfile

from tests.serve_app.conftest import ServiceInfo
from tests.train_jobs.conftest import write_dataset
from train_jobs.export import export_run
from voice_core.settings import Settings

pytestmark = pytest.mark.slow
RUN = {
    "dataset": "speaker",
    "base_model": "tiny-xtts",
    "method": "lora",
    "epochs": 1,
    "batch_size": 2,
    "lr": 1e-3,
    "min_audio_s": 1,
    "cpus_per_worker": 0.5,
    "checkpoint_every_steps": 2,
    "max_failures": 0,
}


@pytest.fixture(scope="module")
def dataset(service: ServiceInfo, tmp_path_factory: pytest.TempPathFactory) -> str:
    target = service.storage / "datasets" / "speaker"
    if not target.exists():
        shutil.copytree(write_dataset(tmp_path_factory.mktemp("api-train") / "speaker"), target)
    return "speaker"


def _post(service: ServiceInfo, body: dict) -> httpx.Response:
    return httpx.post(f"{service.url}/training/jobs", json=body, headers=service.headers, timeout=120)


def _error(response: httpx.Response, status: int, text: str) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert text in message, response.json()
    return message


def _wait_for(service: ServiceInfo, run: str, statuses: set[str], timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    view: dict = {}
    while time.monotonic() < deadline:
        view = httpx.get(f"{service.url}/training/jobs/{run}", headers=service.headers, timeout=30).json()
        if view["status"] in statuses:
            return view
        time.sleep(2)
    raise AssertionError(f"run {run} never reached {statuses}: {view}")


def test_bad_training_requests_get_4xx_and_store_nothing(service: ServiceInfo, dataset: str) -> None:
    _error(_post(service, {**RUN, "run_name": "bad"} | {"dataset": None}), 400, "'dataset' is required")
    _error(_post(service, {**RUN, "run_name": "bad", "dataset": "../etc"}), 400, "'dataset'")
    _error(_post(service, {**RUN, "run_name": "bad", "dataset": "nope"}), 404, "does not exist")
    # A folder of the service's working directory (the repository's tests/) is not a dataset in storage.
    tests_dir = _error(_post(service, {**RUN, "run_name": "bad", "dataset": "tests"}), 404, "storage/datasets")
    assert str(Path.cwd()) not in tests_dir
    _error(_post(service, {**RUN, "run_name": "bad", "base_model": "nope"}), 404, "model 'nope' not found")
    _error(_post(service, {**RUN, "run_name": "bad", "lr": -1}), 400, "lr")
    _error(_post(service, {**RUN, "run_name": "bad", "method": "dreambooth"}), 400, "method")
    _error(_post(service, {**RUN, "run_name": "bad", "min_audio_s": 600}), 400, "less than the 600 s required")
    _error(_post(service, {**RUN, "run_name": "../bad"}), 400, "run name")
    assert not (service.storage / "runs" / "bad").exists()
    _error(httpx.get(f"{service.url}/training/jobs/never", headers=service.headers), 404, "no training run")
    _error(httpx.delete(f"{service.url}/training/jobs/never", headers=service.headers), 404, "no training run")
    assert httpx.post(f"{service.url}/training/jobs", json=RUN).status_code == 401  # API key required


def test_lora_run_through_the_api_then_export_and_serve(service: ServiceInfo, dataset: str) -> None:
    started = _post(service, {**RUN, "run_name": "api-lora"})
    assert started.status_code == 202, started.text
    assert started.json()["status"] in {"queued", "running", "finished"} and started.json()["total_steps"] == 3
    _error(_post(service, {**RUN, "run_name": "api-lora"}), 409, "is already running")
    view = _wait_for(service, "api-lora", {"finished", "failed"})
    assert view["status"] == "finished", view
    _error(_post(service, {**RUN, "run_name": "api-lora", "lr": 0.5}), 409, "lr: 0.001 -> 0.5")
    assert view["step"] == view["total_steps"] == 3 and view["epoch"] == 1
    assert [p[0] for p in view["losses"]["train"]] == [1, 2, 3] and len(view["losses"]["eval"]) == 2
    assert [c["step"] for c in view["checkpoints"]] == [2, 3]
    assert view["logs_tail"] and view["method"] == "lora"
    listed = httpx.get(f"{service.url}/training/jobs", headers=service.headers).json()["data"]
    assert any(run["id"] == "api-lora" and run["status"] == "finished" for run in listed)

    samples = httpx.get(f"{service.url}/training/samples", params={"run": "api-lora"}, headers=service.headers).json()
    assert [s["epoch"] for s in samples["data"]] == [1]
    audio = httpx.get(f"{service.url}{samples['data'][0]['url']}", headers=service.headers)
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert soundfile.info(io.BytesIO(audio.content)).duration > 0.5
    bad = httpx.get(f"{service.url}/training/runs/api-lora/samples/..%2Frun.json", headers=service.headers)
    assert bad.status_code in (400, 404)

    checkpoints = httpx.get(f"{service.url}/training/checkpoints", headers=service.headers).json()["data"]
    ours = [c for c in checkpoints if c["path"].startswith("runs/api-lora/")]
    assert {c["kind"] for c in ours} >= {"lora_adapter"} and not any(c["broken"] for c in ours)
    tensorboard = httpx.get(f"{service.url}/training/tensorboard", headers=service.headers).json()
    assert tensorboard["logdir"] == str(service.storage / "runs") and "tensorboard --logdir" in tensorboard["hint"]
    assert tensorboard["ray_dashboard_url"] is None  # the test cluster runs without a dashboard
    assert list((service.storage / "runs" / "api-lora" / "tensorboard").glob("events.out.tfevents.*"))

    settings = Settings.load(storage_root=service.storage)
    adapter = export_run(settings, "api-lora", model_id="api-lora-adapter")
    merged = export_run(settings, "api-lora", model_id="api-lora-merged", merge=True)
    assert adapter["kind"] == "lora" and merged["kind"] == "merged-lora"
    assert (Path(adapter["directory"]) / "adapter_model.safetensors").is_file()
    assert (Path(merged["directory"]) / "model.pth").is_file()
    models = {m["id"]: m for m in httpx.get(f"{service.url}/models", headers=service.headers).json()["models"]}
    assert models["api-lora-adapter"]["kind"] == "lora_adapter" and models["api-lora-adapter"]["status"] == "ok"
    assert models["api-lora-merged"]["kind"] == "model" and models["api-lora-merged"]["status"] == "ok"
    for model_id in ("api-lora-adapter", "api-lora-merged"):
        speech = httpx.post(
            f"{service.url}/v1/audio/speech",
            json={
                "model": model_id,
                "input": "Hello from my voice.",
                "voice": "alloy",
                "response_format": "wav",
                "seed": 3,
            },
            headers=service.headers,
            timeout=180,
        )
        assert speech.status_code == 200, speech.text
        assert speech.headers["x-model-used"] == model_id
        assert soundfile.info(io.BytesIO(speech.content)).duration > 0.5


def test_stop_and_resume_through_the_api(service: ServiceInfo, dataset: str) -> None:
    body = {**RUN, "run_name": "api-stop", "epochs": 30, "checkpoint_every_steps": 1}
    assert _post(service, body).status_code == 202
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        view = httpx.get(f"{service.url}/training/jobs/api-stop", headers=service.headers).json()
        if view["checkpoints"] and view["step"] >= 2:
            break
        time.sleep(1)
    stopped = httpx.delete(f"{service.url}/training/jobs/api-stop", headers=service.headers)
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped", stopped.text
    _error(httpx.delete(f"{service.url}/training/jobs/api-stop", headers=service.headers), 409, "not running")
    time.sleep(3)
    step_at_stop = httpx.get(f"{service.url}/training/jobs/api-stop", headers=service.headers).json()["step"]
    time.sleep(5)
    assert httpx.get(f"{service.url}/training/jobs/api-stop", headers=service.headers).json()["step"] == step_at_stop
    assert step_at_stop < 90
    resumed = _post(service, {**body, "epochs": 30})
    assert resumed.status_code == 202 and resumed.json()["resumed"] is True
    view = _wait_for(service, "api-stop", {"running", "finished", "failed"}, timeout=120)
    deadline = time.monotonic() + 300
    while view["step"] <= step_at_stop and time.monotonic() < deadline:
        time.sleep(2)
        view = httpx.get(f"{service.url}/training/jobs/api-stop", headers=service.headers).json()
    assert view["resumes"] and view["resumes"][-1]["step"] >= 1  # continued from a checkpoint
    httpx.delete(f"{service.url}/training/jobs/api-stop", headers=service.headers)
