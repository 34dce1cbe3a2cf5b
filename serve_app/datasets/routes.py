"""Datasets: build an XTTS fine-tuning dataset from recordings, follow the build, browse its clips.

``POST /datasets`` stores uploaded recordings (or names a folder already under
``storage/recordings/``), checks the options as the data_prep CLI will, and starts
``python -m data_prep build`` as a Ray Job (or, without a Jobs API, as a detached Ray actor); the
answer is 202. The logic lives in :mod:`serve_app.datasets.service` and :mod:`serve_app.datasets.builds`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.boundary import describe_validation
from serve_app.context import ctx
from serve_app.datasets import builds
from serve_app.datasets.protocol import DatasetRequest
from serve_app.datasets.service import BUILDING, DatasetStore, check_options
from serve_app.http import is_form, read_json
from voice_core.errors import ConflictError, InvalidInputError, NotFoundError, PayloadTooLargeError
from voice_core.settings import Settings
from voice_core.storage import Storage

router = APIRouter()
REQUEST_MODELS = ("tiny.en", "base")
_locks: dict[str, asyncio.Lock] = {}


def _store() -> DatasetStore:
    return DatasetStore(Storage.from_settings(ctx().settings))


def _validated(data: Any) -> DatasetRequest:
    try:
        return DatasetRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation(exc.errors())) from None


async def _read_request(request: Request, settings: Settings) -> tuple[DatasetRequest, list[UploadFile]]:
    """Parse JSON or a form; enforce the upload count and size limits before anything is stored."""
    if not is_form(request.headers.get("content-type", "")):
        return _validated(await read_json(request, form_allowed=True)), []
    try:
        form = await request.form(max_files=settings.max_dataset_files + 1, max_fields=50)
    except StarletteHTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise PayloadTooLargeError(
                f"field 'files': at most {settings.max_dataset_files} recordings per request (AVS_MAX_DATASET_FILES)"
            ) from None
        raise InvalidInputError(f"the multipart form could not be read: {exc.detail}") from None
    fields: dict[str, Any] = {}
    files: list[UploadFile] = []
    for key, value in form.multi_items():
        if isinstance(value, str):
            fields[key] = value or None
        elif key == "files":
            files.append(value)
        else:
            raise InvalidInputError(f"unexpected file field '{key}'; send recordings in the field 'files'")
    body = _validated(fields)
    if body.source is not None:
        raise InvalidInputError("field 'source': only JSON requests name a source folder; a form sends 'files'")
    if len(files) > settings.max_dataset_files:
        raise PayloadTooLargeError(
            f"field 'files': {len(files)} recordings sent; at most {settings.max_dataset_files} (AVS_MAX_DATASET_FILES)"
        )
    for upload in files:
        if upload.size is not None and upload.size > settings.max_dataset_file_bytes:
            raise PayloadTooLargeError(
                f"field 'files': {upload.filename!r} is {upload.size} bytes; at most "
                f"{settings.max_dataset_file_bytes} (AVS_MAX_DATASET_FILE_BYTES)"
            )
    return body, files


@router.post("/datasets", status_code=202)
async def create_dataset(request: Request) -> JSONResponse:
    """Start building (or extending) a dataset from uploaded recordings or a folder on shared storage."""
    settings = ctx().settings
    store = _store()
    body, files = await _read_request(request, settings)
    store.dataset_dir(body.name)
    options = body.options(settings)
    check_options(options, settings.dataset_build_cpus)
    if files:
        source = body.name
        store.recordings_dir(source, "name")
    elif body.source is not None:
        source = body.source
        if not store.recordings_dir(source).is_dir():
            raise NotFoundError(
                f"field 'source': no folder {source!r} under storage/recordings/; upload the recordings in "
                "'files' instead, or copy them there first"
            )
    else:
        raise InvalidInputError(
            "no recordings: send them in the multipart field 'files', or JSON with 'source' naming a folder under "
            "storage/recordings/"
        )
    async with _locks.setdefault(body.name, asyncio.Lock()):
        previous = store.load_record(body.name)
        if previous is not None:
            previous = await asyncio.to_thread(builds.refresh, store, previous, settings)
            if previous["status"] == BUILDING:
                raise ConflictError(
                    f"dataset {body.name!r} is being built (job {previous['job_id']}); wait until GET "
                    f"/datasets/{body.name} says ready or failed, then send again to add recordings"
                )
        stored = store.stored_options(body.name, previous)
        if stored is not None and (changed := options.differences(stored)):
            raise ConflictError(
                f"dataset {body.name!r} exists with other options ({'; '.join(changed)}); use another name, or "
                "the same options to add recordings to it"
            )
        if files:
            uploads = [(upload.filename or "", upload.file) for upload in files]
            await asyncio.to_thread(store.save_uploads, body.name, uploads, settings.max_dataset_file_bytes)
        record = await asyncio.to_thread(builds.submit, store, body.name, options, source, previous, settings)
    answer = {key: record[key] for key in ("name", "status", "job_id", "runner", "runner_reason", "options", "source")}
    answer["appended"] = stored is not None
    return JSONResponse(answer, status_code=202, headers={"location": f"/datasets/{body.name}"})


@router.get("/datasets")
async def list_datasets() -> dict[str, Any]:
    """Datasets under storage/datasets with status, clip counts and kept duration."""
    settings = ctx().settings
    store = _store()

    def collect() -> list[dict[str, Any]]:
        return [builds.describe(store, name, settings) for name in store.names()]

    return {"object": "list", "data": await asyncio.to_thread(collect)}


@router.get("/datasets/{name}")
async def get_dataset(name: str) -> dict[str, Any]:
    """One dataset: status, manifest summary, build progress, runner state and the end of the build log."""
    settings = ctx().settings
    return await asyncio.to_thread(builds.describe, _store(), name, settings, True)


@router.get("/datasets/{name}/clips")
async def list_clips(
    name: str,
    limit: int = Query(default=20, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> dict[str, Any]:
    """Kept clips (id, text, normalized text, duration, audio URL), sorted by id."""
    total, page = await asyncio.to_thread(_store().clips, name, limit, offset)
    return {"object": "list", "total": total, "offset": offset, "data": page}


@router.get("/datasets/{name}/clips/{clip_id}/audio")
async def clip_audio(name: str, clip_id: str) -> FileResponse:
    """A kept clip's WAV (mono PCM16 at the dataset's sample rate, 22.05 kHz by default)."""
    path = _store().clip_path(name, clip_id)
    return FileResponse(path, media_type="audio/wav", filename=f"{clip_id}.wav")
