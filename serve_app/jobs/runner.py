"""The job runner: one Serve replica that works through queued synthesis jobs in the background.

Jobs live on disk (:mod:`serve_app.jobs.service`), so the runner holds no state that matters: when its
replica starts (also after a crash or a redeploy) it scans for queued and running jobs and
resumes them, skipping units whose audio is already on disk, until a job has been started
``max_job_attempts`` times. The ingress writes a job, then calls :meth:`JobRunner.wake`. Each unit
is one call to the TTS deployment; when that deployment is unavailable (a replica died, is
restarting, or its queue is full) the unit is retried with backoff.

A runner works only on jobs it has claimed (:meth:`serve_app.jobs.service.JobStore.claim`), so a second
replica during a rolling redeploy skips them, and writes records only through the store's
compare-and-swap: a cancel written to disk by any ingress replica is seen before each unit and
before the final status, and is never overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import IO, Any

import numpy as np
from ray import serve

from serve_app.jobs.service import ACTIVE, FAILED, RUNNING, SUCCEEDED, JobStore
from serve_app.speech.engine import PIECE_GAP_S
from serve_app.speech.protocol import SynthesisRequest, SynthesisResult
from voice_core.errors import OverloadedError, VoiceError
from voice_core.settings import Settings
from voice_core.storage import Storage, atomic_write_bytes

log = logging.getLogger(__name__)

# How often the runner looks for jobs nobody woke it for (written by another ingress replica, say).
RESCAN_S = 30.0
# Failures of the TTS code itself (not of its availability) tolerated per unit before the job fails.
MAX_INTERNAL_FAILURES = 3
MAX_BACKOFF_S = 10.0
TRANSIENT, INTERNAL = "transient", "internal"


def classify_failure(exc: BaseException) -> VoiceError | str:
    """Decide what a failed TTS call means for the job.

    Returns:
        The project error to fail the job with (bad voice, unknown model, ...), :data:`TRANSIENT`
        when the deployment was unavailable and the call should be retried, or :data:`INTERNAL`
        when the TTS code itself failed.
    """
    from ray.exceptions import RayError, RayTaskError
    from ray.serve.exceptions import RayServeException

    cause = getattr(exc, "cause", None) if isinstance(exc, RayTaskError) else exc
    if isinstance(cause, OverloadedError):
        return TRANSIENT
    if isinstance(cause, VoiceError):
        return cause
    if isinstance(cause, (RayError, RayServeException, TimeoutError, ConnectionError)):
        return TRANSIENT if not isinstance(cause, RayTaskError) else INTERNAL
    return INTERNAL


def _error(kind: str, message: str) -> dict[str, str]:
    return {"type": kind, "message": message}


@serve.deployment(name="JobRunner", num_replicas=1, max_ongoing_requests=100)
class JobRunner:
    """Runs queued jobs, at most ``max_concurrent_jobs`` at once, one TTS call per unit.

    Args:
        tts: handle of the TTS deployment.
        settings: the service settings (storage root, stretch limit, retry window).
        max_concurrent_jobs: jobs worked on at the same time.
    """

    def __init__(self, tts: Any, settings: Settings, max_concurrent_jobs: int = 1) -> None:
        self._tts = tts
        self._settings = settings
        self._store = JobStore(Storage.from_settings(settings).ensure())
        self._max_jobs = max_concurrent_jobs
        self._active: dict[str, asyncio.Task] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._wakeup = asyncio.Event()
        self._dispatcher: asyncio.Task | None = None
        # Serve calls a sync constructor on the replica's event loop, so work can start right away.
        self._ensure_started()

    def _ensure_started(self) -> None:
        if self._dispatcher is not None and not self._dispatcher.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # started by the first call instead
        self._dispatcher = loop.create_task(self._dispatch())

    async def wake(self) -> dict[str, Any]:
        """Look for new jobs now (called by the ingress after it wrote one)."""
        self._ensure_started()
        self._wakeup.set()
        return {"active": sorted(self._active)}

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job on disk; a running one stops before its next unit.

        Raises:
            NotFoundError: no such job.
            ConflictError: the job already succeeded or failed.
        """
        record = self._store.cancel(job_id)
        if job_id in self._records:
            self._adopt(self._records[job_id], record)
        return record

    def check_health(self) -> None:
        """Fail the Serve health check when the dispatcher died (Serve then restarts the replica)."""
        if self._dispatcher is not None and self._dispatcher.done():
            raise RuntimeError("the job dispatcher stopped; see the replica log")

    async def _dispatch(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                for job_id in self._store.pending():
                    if len(self._active) >= self._max_jobs:
                        break
                    if job_id in self._active:
                        continue
                    owner = self._store.claim(job_id)
                    if owner is None:
                        continue  # another runner replica works on it (or it is gone)
                    task = asyncio.get_running_loop().create_task(self._run(job_id, owner))
                    self._active[job_id] = task
                    task.add_done_callback(functools.partial(self._done, job_id))
            except Exception:  # a broken directory must not stop the other jobs
                log.exception("scanning for jobs failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), RESCAN_S)

    def _done(self, job_id: str, task: asyncio.Task) -> None:
        self._active.pop(job_id, None)
        self._records.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s stopped unexpectedly", job_id, exc_info=task.exception())
        self._wakeup.set()

    def __del__(self) -> None:
        # Serve calls this on graceful shutdown: stop working so a successor replica is the only
        # writer. Running jobs stay "running" on disk and are resumed by the next replica.
        for task in [getattr(self, "_dispatcher", None), *getattr(self, "_active", {}).values()]:
            if task is not None:
                with contextlib.suppress(Exception):
                    task.cancel()

    async def _run(self, job_id: str, owner: IO[bytes]) -> None:
        try:
            record = self._store.load(job_id)
            if record["status"] not in ACTIVE:
                return
            self._records[job_id] = record
            try:
                await self._work(record)
            except Exception as exc:
                log.exception("job %s failed", job_id)
                if record["status"] in ACTIVE:
                    if isinstance(exc, VoiceError):
                        self._finish(record, FAILED, _error(exc.error_type, exc.message))
                    else:
                        message = "the job failed inside the service; see the service log"
                        self._finish(record, FAILED, _error("internal_error", message))
        finally:
            owner.close()  # lets another runner resume the job if it is still active

    @staticmethod
    def _adopt(record: dict[str, Any], stored: dict[str, Any]) -> None:
        record.clear()
        record.update(stored)

    def _save(self, record: dict[str, Any]) -> None:
        """Write the runner's copy of the record, unless the job already ended on disk (then adopt that)."""
        mine = dict(record)
        stored = self._store.update(record["id"], lambda current: self._adopt(current, mine))
        if stored["status"] != mine["status"]:
            self._adopt(record, stored)

    def _running(self, record: dict[str, Any]) -> bool:
        """Whether the job is still running, also on disk (a cancel may have been written there)."""
        if record["status"] == RUNNING:
            stored = self._store.load(record["id"])
            if stored["status"] != RUNNING:
                self._adopt(record, stored)
        return record["status"] == RUNNING

    def _finish(self, record: dict[str, Any], status: str, error: dict[str, str] | None = None) -> None:
        record["status"] = status
        record["error"] = error
        record["timings"]["finished_at"] = time.time()
        self._save(record)

    async def _work(self, record: dict[str, Any]) -> None:
        job_id = record["id"]
        limit = self._settings.max_job_attempts
        if record["attempts"] >= limit:
            message = (
                f"the job was attempted {record['attempts']} times and the job runner crashed or was stopped during "
                f"each attempt; it is not started again (AVS_MAX_JOB_ATTEMPTS={limit}). Finished units are kept; "
                "see the service log, then submit the job again"
            )
            log.error("job %s: %s", job_id, message)
            self._finish(record, FAILED, _error("internal_error", message))
            return
        units = self._store.units(job_id)
        finished = sum(self._store.part_path(job_id, i).is_file() for i in range(len(units)))
        record.update(status=RUNNING, attempts=record["attempts"] + 1, resumed_from=finished, done=finished)
        record["progress"] = round(finished / len(units), 4)
        record["timings"]["started_at"] = record["timings"]["started_at"] or time.time()
        self._save(record)
        for index, unit in enumerate(units):
            if not self._running(record):
                return
            if self._store.part_path(job_id, index).is_file():
                continue
            result = await self._synthesize(record, unit, index)
            if result is None or not self._running(record):
                return
            # Record first: after a crash in between, the part is simply made again (``done`` is
            # recounted from the parts on resume), and the model the job is pinned to is never lost.
            self._account(record, result)
            self._save(record)
            await asyncio.to_thread(self._store.write_part, job_id, index, result.samples, result.sample_rate)
        track, rate, warnings = await asyncio.to_thread(self._assemble, record, units)
        data = await asyncio.to_thread(_encode, track, rate, record["format"])
        if not self._running(record):
            return
        result_path = self._store.result_path(job_id, record["format"])
        await asyncio.to_thread(atomic_write_bytes, result_path, data)
        record["warnings"].extend(warnings)
        record["sample_rate"] = rate
        record["timings"]["audio_seconds"] = round(len(track) / rate, 3)
        record.update(progress=1.0, audio_url=f"/jobs/{job_id}/audio")
        self._finish(record, SUCCEEDED)
        if record["status"] == SUCCEEDED:
            await asyncio.to_thread(self._store.drop_parts, job_id)
        else:  # cancelled while the result was written: the cancel stands, the audio goes
            result_path.unlink(missing_ok=True)

    def _request(self, record: dict[str, Any], unit: dict[str, Any], index: int) -> SynthesisRequest:
        # Once a unit has been made, later ones use the same model, so a job never mixes models
        # (a fallback chosen for the first unit holds for the whole job, resumed or not).
        pinned = record["model_used"]
        return SynthesisRequest(
            text=unit["text"],
            language=record["language"],
            voice=record["voice"],
            model=pinned or record["model"],
            allow_fallback=record["allow_fallback"] and pinned is None,
            profile=record["quality_profile"],
            seed=(record["seed"] + index) % 2**31,
            raw=True,
        )

    async def _synthesize(self, record: dict[str, Any], unit: dict[str, Any], index: int) -> SynthesisResult | None:
        """One unit, retried while the TTS deployment is unavailable; None when the job ended meanwhile."""
        request = self._request(record, unit, index)
        deadline = time.monotonic() + self._settings.job_retry_seconds
        delay, internal = 1.0, 0
        while True:
            try:
                return await self._tts.synthesize.remote(request)
            except Exception as exc:
                if not self._running(record):
                    return None  # cancelled while the call was under way
                verdict = classify_failure(exc)
                if isinstance(verdict, VoiceError):
                    self._finish(record, FAILED, _error(verdict.error_type, f"unit {index + 1}: {verdict.message}"))
                    return None
                internal += verdict == INTERNAL
                what = f"unit {index + 1}/{record['total']} of job {record['id']}"
                if internal >= MAX_INTERNAL_FAILURES:
                    log.error("%s: the TTS deployment failed %d times: %r", what, internal, exc)
                    message = f"the TTS deployment failed {internal} times on unit {index + 1}; see the service log"
                    self._finish(record, FAILED, _error("internal_error", message))
                    return None
                if time.monotonic() + delay > deadline:
                    message = (
                        f"the TTS deployment stayed unavailable for {self._settings.job_retry_seconds:g} s "
                        f"(last: {type(exc).__name__}) at unit {index + 1}; {record['done']} finished units are kept"
                    )
                    self._finish(record, FAILED, _error("unavailable", message))
                    return None
                log.warning("%s: TTS call failed (%s), retrying in %.0f s", what, type(exc).__name__, delay)
                record["retries"] += 1
                self._save(record)
                await asyncio.sleep(delay)
                if not self._running(record):
                    return None
                delay = min(delay * 2, MAX_BACKOFF_S)

    def _account(self, record: dict[str, Any], result: SynthesisResult) -> None:
        if record["model_used"] is None:
            record["model_used"] = result.model_used
            record["sample_rate"] = result.sample_rate
        if result.fallback_reason and not record["fallback"]:
            record.update(fallback=True, fallback_reason=result.fallback_reason)
        record["untrained"] = record["untrained"] or result.untrained
        record["timings"]["synth_seconds"] = round(record["timings"]["synth_seconds"] + result.synth_seconds, 3)
        record["done"] += 1
        record["progress"] = round(record["done"] / record["total"], 4)

    def _assemble(self, record: dict[str, Any], units: list[dict[str, Any]]) -> tuple[np.ndarray, int, list[str]]:
        """Join the parts: one after another for text, on a timed track for SRT (returns track, rate, warnings)."""
        from voice_core.decode import resample

        parts = [self._store.read_part(record["id"], index) for index in range(len(units))]
        rate = record["sample_rate"] or parts[0][1]
        clips = [resample(samples, part_rate, rate) for samples, part_rate in parts]
        if record["kind"] == "srt":
            from serve_app.jobs.srt import Cue, build_track

            cues = [Cue(u["cue"], u["start_s"], u["end_s"], u["text"], u["line"]) for u in units]
            track, warnings = build_track(
                cues, clips, rate, self._settings.srt_max_stretch, self._settings.max_job_audio_seconds
            )
            return track, rate, warnings
        gap = np.zeros(int(PIECE_GAP_S * rate), dtype=np.float32)
        joined = [piece for clip in clips for piece in (gap, clip)][1:]
        return np.concatenate(joined), rate, []


def _encode(track: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    from voice_core.encode import encode_audio

    return encode_audio(track, sample_rate, fmt)
