"""Training: start fine-tuning runs, follow them, stop them; checkpoints, samples, TensorBoard.

``POST /training/jobs`` takes the options of ``python -m train_jobs finetune`` as JSON (the dataset
is a name under ``storage/datasets``), runs the same pre-flight checks at once (a bad dataset is a
400, a clashing run name a 409) and starts the run as a Ray Job (or a detached actor); the answer is
202. The logic lives in :mod:`serve_app.training.service`. The handlers say "training run"; the
paths and OpenAPI operation ids keep "jobs", as clients know them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from serve_app import submissions
from serve_app.context import ctx
from serve_app.http import read_json
from serve_app.training import service
from train_jobs.config import parse_config
from voice_core.checkpoints import list_checkpoints
from voice_core.errors import InvalidInputError
from voice_core.storage import Storage, validate_component

router = APIRouter()


_lock = asyncio.Lock()


def _storage() -> Storage:
    return Storage.from_settings(ctx().settings)


@router.post("/training/jobs", status_code=202, operation_id="create_training_job_training_jobs_post")
async def create_training_run(request: Request) -> JSONResponse:
    """Check and start (or resume) a fine-tuning run; 202 with the run's view."""
    settings = ctx().settings
    values = await read_json(request)
    dataset = values.get("dataset")
    if not isinstance(dataset, str):
        raise InvalidInputError("'dataset' is required: the name of a dataset under storage/datasets (GET /datasets)")
    validate_component(dataset, "'dataset'")  # a name, never a path elsewhere on the server
    values.pop("progress_bar", None)
    config = parse_config(values)
    async with _lock:  # one check-and-start at a time: two POSTs of one run name cannot both start it
        view = await asyncio.to_thread(service.submit, config, settings)
    return JSONResponse(view, status_code=202)


@router.get("/training/jobs", operation_id="list_training_jobs_training_jobs_get")
async def list_training_runs() -> dict[str, Any]:
    """All runs with their status and position."""
    settings, storage = ctx().settings, _storage()

    def collect() -> list[dict[str, Any]]:
        return [service.describe(storage, name, settings, detail=False) for name in service.run_names(storage)]

    return {"object": "list", "data": await asyncio.to_thread(collect)}


@router.get("/training/jobs/{run_name}", operation_id="get_training_job_training_jobs__run_name__get")
async def get_training_run(run_name: str) -> dict[str, Any]:
    """One run: status, epoch, steps, loss curves, samples, checkpoints, logs tail."""
    return await asyncio.to_thread(service.describe, _storage(), run_name, ctx().settings, True)


@router.delete("/training/jobs/{run_name}", operation_id="stop_training_job_training_jobs__run_name__delete")
async def stop_training_run(run_name: str) -> dict[str, Any]:
    """Stop a running run (POST the same options again to resume it from its latest checkpoint)."""
    return await asyncio.to_thread(service.stop, _storage(), run_name, ctx().settings)


@router.get("/training/checkpoints")
async def get_checkpoints() -> dict[str, Any]:
    """Every checkpoint, model weights file and adapter under storage (broken ones flagged with the reason)."""
    storage = _storage()
    found = await asyncio.to_thread(list_checkpoints, storage.root, storage.allowed_mounts)
    return {"object": "list", "data": [info.to_dict() for info in found]}


@router.get("/training/samples")
async def get_samples(run: str = Query(description="Run name.")) -> dict[str, Any]:
    """The run's per-epoch samples with audio URLs."""
    return {"object": "list", "data": await asyncio.to_thread(service.samples, _storage(), run)}


@router.get("/training/runs/{run_name}/samples/{filename}")
async def get_sample_audio(run_name: str, filename: str) -> FileResponse:
    """One sample WAV."""
    path = await asyncio.to_thread(service.sample_path, _storage(), run_name, filename)
    return FileResponse(path, media_type="audio/wav", filename=f"{run_name}-{filename}")


@router.get("/training/tensorboard")
async def get_tensorboard() -> dict[str, Any]:
    """Where to look at training: the TensorBoard URL, its log directory and the Ray dashboard.

    The TensorBoard URL is ``AVS_TENSORBOARD_URL``; the dashboard is ``AVS_DASHBOARD_ADDRESS``, else the one
    the cluster reports (None without one).
    """
    settings = ctx().settings
    logdir = str(Storage.from_settings(settings).runs)
    hint = f"start `tensorboard --logdir {logdir}` and set AVS_TENSORBOARD_URL to its address"
    hint = None if settings.tensorboard_url else hint
    dashboard = await asyncio.to_thread(submissions.dashboard_address, settings)
    return {"url": settings.tensorboard_url, "logdir": logdir, "hint": hint, "ray_dashboard_url": dashboard}
