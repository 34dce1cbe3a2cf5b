"""Synthesis jobs: long text or SRT subtitles rendered in the background, polled, then downloaded.

``POST /jobs`` validates everything it can (text, SRT syntax, profile, format, language, voice),
writes the job to storage and wakes the :class:`serve_app.jobs.runner.JobRunner`; the answer is 202.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from serve_app.context import ctx
from serve_app.http import parse_body
from serve_app.jobs.protocol import JobRequest
from serve_app.jobs.service import ACTIVE, SUCCEEDED, JobStore, new_job_id, new_record
from serve_app.jobs.srt import Cue, parse_srt
from serve_app.speech.profiles import resolve_params
from serve_app.speech.text import normalise_language, split_text
from serve_app.voices.service import VoiceStore, choose_voice
from voice_core.errors import ConfigError, ConflictError, InvalidInputError, PayloadTooLargeError
from voice_core.settings import Settings
from voice_core.storage import Storage

log = logging.getLogger(__name__)
router = APIRouter()
# The job is on disk before the runner is woken, so a slow or restarting runner must not hold the
# answer: it finds the job when it starts and on its periodic scan.
WAKE_TIMEOUT_S = 5.0


def _store() -> JobStore:
    return JobStore(Storage.from_settings(ctx().settings))


def _runner() -> Any:
    runner = ctx().runner
    if runner is None:
        raise ConfigError("jobs are not available: the application was built without the JobRunner deployment")
    return runner


async def _srt_upload(files: dict, settings: Settings) -> str | None:
    uploads = files.get("srt", [])
    if len(uploads) > 1:
        raise InvalidInputError("send one SRT file in the form field 'srt'")
    if not uploads:
        return None
    data = await uploads[0].read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        limit = settings.max_upload_bytes
        raise PayloadTooLargeError(f"the SRT file is larger than {limit} bytes (AVS_MAX_UPLOAD_BYTES)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"the SRT file is not UTF-8 text (byte {exc.start} is invalid); save it as UTF-8 and send it again"
        ) from None


def _check_srt_size(srt: str, settings: Settings) -> None:
    """Refuse an SRT sent as text that is larger than an uploaded file may be, before parsing it."""
    size = len(srt.encode("utf-8", errors="surrogatepass"))
    if size > settings.max_upload_bytes:
        raise PayloadTooLargeError(
            f"the SRT is {size} bytes; at most {settings.max_upload_bytes} (AVS_MAX_UPLOAD_BYTES): "
            "split it into several jobs"
        )


async def _check_voice(body: JobRequest, settings: Settings) -> tuple[str, str]:
    """Normalise the language and check the voice against the default model; return (language, model id)."""
    info = await ctx().tts.info.remote()
    language = normalise_language(body.language or settings.default_language, info["languages"])
    if body.model in (None, info["default_model"]):
        choice = choose_voice(body.voice, settings)
        stored = VoiceStore(Storage.from_settings(settings)).exists(choice.name)
        if choice.speaker not in info["model"]["speakers"] and not stored:
            raise choice.unknown(info["default_model"], references_allowed=False)
    return language, info["default_model"]


def _units(body: JobRequest, cues: list[Cue] | None, language: str) -> tuple[str, list[dict[str, Any]]]:
    if cues is not None:
        units = [{"text": c.text, "cue": c.index, "start_s": c.start_s, "end_s": c.end_s, "line": c.line} for c in cues]
        return "srt", units
    pieces = split_text(body.text or "", language, resolve_params(body.quality_profile).split_chars)
    if not pieces:
        raise InvalidInputError("text is empty; send at least one word to speak")
    return "text", [{"text": piece} for piece in pieces]


@router.post("/jobs", status_code=202)
async def create_job(request: Request) -> JSONResponse:
    """Accept a synthesis job (``text`` or ``srt``: text, or an uploaded file in the form field ``srt``)."""
    settings = ctx().settings
    body, files = await parse_body(request, JobRequest, file_fields=("srt",))
    uploaded = await _srt_upload(files, settings)
    if uploaded is not None and body.srt is not None:
        raise InvalidInputError("send the SRT either as the file field 'srt' or as text, not both")
    srt = uploaded if uploaded is not None else body.srt
    if (body.text is None) == (srt is None):
        raise InvalidInputError("send exactly one of 'text' (plain text) or 'srt' (SubRip subtitles)")
    source = srt if srt is not None else body.text or ""
    if not source.strip():
        raise InvalidInputError(f"{'srt' if srt is not None else 'text'} is empty; send something to speak")
    runner = _runner()
    cues = None
    if srt is not None:
        _check_srt_size(srt, settings)
        # Off the event loop: a large file takes a while to parse, and other requests must not wait.
        cues = await asyncio.to_thread(parse_srt, srt, settings.max_job_audio_seconds)
    chars = sum(len(cue.text) for cue in cues) if cues is not None else len(source.strip())
    if chars > settings.max_job_chars:
        raise PayloadTooLargeError(
            f"the job has {chars} characters to speak; at most {settings.max_job_chars} (AVS_MAX_JOB_CHARS): "
            "split it into several jobs"
        )
    language, default_model = await _check_voice(body, settings)
    kind, units = _units(body, cues, language)
    record = new_record(
        new_job_id(),
        kind,
        len(units),
        voice=body.voice,
        language=language,
        quality_profile=body.quality_profile,
        model=body.model,
        model_requested=body.model or default_model,
        allow_fallback=body.allow_fallback,
        format=body.format,
        seed=body.seed if body.seed is not None else secrets.randbelow(2**31),
        chars=chars,
    )
    _store().create(record, units)
    try:
        await asyncio.wait_for(_wake(runner), WAKE_TIMEOUT_S)
    except Exception as exc:  # the job is stored; the runner's next scan picks it up
        log.warning("job %s stored but the runner was not woken (%s)", record["id"], type(exc).__name__)
    return JSONResponse(record, status_code=202, headers={"location": f"/jobs/{record['id']}"})


async def _wake(runner: Any) -> None:
    await runner.wake.remote()


@router.get("/jobs")
async def list_jobs(limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
    """Jobs, newest first."""
    return {"object": "list", "data": _store().list(limit=limit)}


@router.get("/jobs/{job_id}")
async def get_job(job_id: str) -> dict[str, Any]:
    """One job's record: status, progress, models, timings, warnings and error."""
    return _store().load(job_id)


@router.get("/jobs/{job_id}/audio")
async def job_audio(job_id: str) -> FileResponse:
    """The finished job's audio (409 until the job has succeeded)."""
    store = _store()
    record = store.load(job_id)
    status = record["status"]
    if status != SUCCEEDED:
        if status in ACTIVE:
            detail = f"is {status} ({record['done']}/{record['total']} units done); poll GET /jobs/{job_id} until it"
            raise ConflictError(f"job {job_id} {detail} has status 'succeeded'")
        reason = f": {record['error']['message']}" if record.get("error") else ""
        raise ConflictError(f"job {job_id} {status}{reason}; it has no audio")
    fmt = record["format"]
    path = store.result_file(job_id, fmt)
    return FileResponse(path, media_type=record["media_type"], filename=f"{job_id}.{fmt}")


@router.delete("/jobs/{job_id}")
async def cancel_job(job_id: str) -> dict[str, Any]:
    """Cancel a queued or running job (a running one stops before its next unit).

    The cancel is written to the job's record on disk, under its lock, so it holds whichever runner
    replica works on the job, and a runner finishing at the same moment cannot overwrite it.
    """
    return await asyncio.to_thread(_store().cancel, job_id)
