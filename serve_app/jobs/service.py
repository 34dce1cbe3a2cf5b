"""Long synthesis jobs on disk: records, their units, finished parts and results.

Layout of ``storage/jobs/<job_id>/``::

    units.json        what to synthesise: one entry per unit (text, and the cue's times for SRT)
    job.json          the record the API returns (status, progress, models, timings, warnings)
    parts/0000.wav    each finished unit, so a resumed job skips the work already done
    result.<format>   the final audio
    .lock             flock'ed while a record is read, changed and written back (:meth:`JobStore.update`)
    .owner            flock'ed by the job runner working on the job (:meth:`JobStore.claim`)

``units.json`` is written before ``job.json``: a directory without a record is not a job yet.
Every file is written atomically. Records change only through :meth:`JobStore.update`, a
compare-and-swap under the job's lock that never moves a job out of a final status, so a cancel
(written by whichever ingress replica received it) is never overwritten by a runner's success,
and two runner replicas (during a rolling redeploy) never work on one job: each claims a job
with a non-blocking lock it holds while working, which the kernel releases if the process dies.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from voice_core.encode import MEDIA_TYPES, write_wav
from voice_core.errors import ConflictError, NotFoundError
from voice_core.status import Status
from voice_core.storage import Storage, atomic_write_json, read_json

QUEUED, RUNNING, SUCCEEDED, FAILED = Status.QUEUED, Status.RUNNING, Status.SUCCEEDED, Status.FAILED
CANCELLED = "cancelled"  # DELETE /jobs/{id}: the synthesis job's own word for a stopped job
ACTIVE: tuple[str, ...] = (QUEUED, RUNNING)
FINAL: tuple[str, ...] = (SUCCEEDED, FAILED, CANCELLED)
RECORD, UNITS, LOCK, OWNER = "job.json", "units.json", ".lock", ".owner"


def new_job_id() -> str:
    """A fresh random job id: ``job-`` and 12 hex digits."""
    return f"job-{secrets.token_hex(6)}"


def new_record(job_id: str, kind: str, total: int, **request: Any) -> dict[str, Any]:
    """The record of a job just accepted.

    Args:
        job_id: from :func:`new_job_id`.
        kind: ``"text"`` or ``"srt"``.
        total: number of units.
        **request: the validated request fields (voice, language, quality_profile, model_requested,
            allow_fallback, format, seed, chars).

    Returns:
        The record, status ``queued``.
    """
    return {
        "id": job_id,
        "object": "job",
        "kind": kind,
        "status": QUEUED,
        "progress": 0.0,
        "done": 0,
        "total": total,
        **request,
        "media_type": MEDIA_TYPES[request["format"]],
        "model_used": None,
        "fallback": False,
        "fallback_reason": None,
        "untrained": False,
        "sample_rate": None,
        "timings": {
            "created_at": time.time(),
            "started_at": None,
            "finished_at": None,
            "synth_seconds": 0.0,
            "audio_seconds": None,
        },
        "warnings": [],
        "error": None,
        "attempts": 0,
        "retries": 0,
        "resumed_from": 0,
        "audio_url": None,
    }


class JobStore:
    """Create, read, list and update jobs under ``storage/jobs``."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def job_dir(self, job_id: str) -> Path:
        """Directory of ``job_id`` (validated: path-like ids raise InvalidInputError)."""
        return self.storage.job_dir(job_id)

    def create(self, record: dict[str, Any], units: list[dict[str, Any]]) -> dict[str, Any]:
        """Write a new job's units, then its record (which makes it visible to the runner)."""
        directory = self.job_dir(record["id"])
        directory.mkdir(parents=True, exist_ok=False)
        atomic_write_json(directory / UNITS, {"units": units})
        atomic_write_json(directory / RECORD, record)
        return record

    def load(self, job_id: str) -> dict[str, Any]:
        """Read a job's record.

        Raises:
            InvalidInputError: ``job_id`` is not a safe id.
            NotFoundError: there is no such job.
        """
        path = self.job_dir(job_id) / RECORD
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise self._missing(job_id) from None

    def _missing(self, job_id: str) -> NotFoundError:
        return NotFoundError(f"no job {job_id!r}; list jobs with GET /jobs")

    @contextmanager
    def _locked(self, job_id: str) -> Iterator[None]:
        try:
            fd = os.open(self.job_dir(job_id) / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            raise self._missing(job_id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def update(self, job_id: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read, change and rewrite a job's record under its exclusive lock (a compare-and-swap).

        A job in a final status (succeeded, failed, cancelled) is left as it is: ``change`` is not
        applied, so whoever wrote the final status first wins.

        Args:
            job_id: the job.
            change: mutates the record read from disk (in place).

        Returns:
            The record now on disk: changed, or unchanged when the job had already finished.

        Raises:
            InvalidInputError: ``job_id`` is not a safe id.
            NotFoundError: there is no such job.
        """
        with self._locked(job_id):
            record = self.load(job_id)
            if record["status"] in FINAL:
                return record
            change(record)
            atomic_write_json(self.job_dir(job_id) / RECORD, record)
            return record

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job on disk; its runner notices before its next unit.

        Returns:
            The cancelled record (also when it was cancelled before).

        Raises:
            NotFoundError: no such job.
            ConflictError: the job already succeeded or failed.
        """

        def cancelled(record: dict[str, Any]) -> None:
            record["status"] = CANCELLED
            record["timings"]["finished_at"] = time.time()

        record = self.update(job_id, cancelled)
        if record["status"] != CANCELLED:
            raise ConflictError(
                f"job {job_id} already {record['status']}; only queued or running jobs can be cancelled"
            )
        return record

    def claim(self, job_id: str) -> IO[bytes] | None:
        """Become the one runner working on ``job_id``, without waiting.

        Returns:
            An open file holding the job's owner lock (close it when done; the kernel releases it
            if the process dies, so a crashed runner's job can be resumed), or None when another
            runner holds the job or the job is gone.
        """
        try:
            handle = open(self.job_dir(job_id) / OWNER, "ab")
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle

    def units(self, job_id: str) -> list[dict[str, Any]]:
        """The units of a job, in order."""
        return json.loads((self.job_dir(job_id) / UNITS).read_text(encoding="utf-8"))["units"]

    def list(self, limit: int | None = None, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """Records, newest first (optionally only those with one of ``statuses``)."""
        records = []
        if self.storage.jobs.is_dir():
            for path in self.storage.jobs.glob(f"*/{RECORD}"):
                record = read_json(path)
                if record is None:
                    continue  # removed or being replaced right now
                if statuses is None or record.get("status") in statuses:
                    records.append(record)
        records.sort(key=lambda r: (r["timings"]["created_at"], r["id"]), reverse=True)
        return records[:limit] if limit is not None else records

    def pending(self) -> list[str]:
        """Ids of queued and running jobs, oldest first (running ones first: they were started)."""
        records = self.list(statuses=ACTIVE)
        records.sort(key=lambda r: (r["status"] != RUNNING, r["timings"]["created_at"], r["id"]))
        return [r["id"] for r in records]

    def part_path(self, job_id: str, index: int) -> Path:
        """Where unit ``index``'s audio is kept once synthesised."""
        return self.job_dir(job_id) / "parts" / f"{index:04d}.wav"

    def write_part(self, job_id: str, index: int, samples: np.ndarray, sample_rate: int) -> None:
        """Keep a finished unit's audio (PCM16 WAV, written atomically)."""
        path = self.part_path(job_id, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, samples, sample_rate)

    def read_part(self, job_id: str, index: int) -> tuple[np.ndarray, int]:
        """A finished unit's audio as float32 samples and its sample rate."""
        with wave.open(str(self.part_path(job_id, index)), "rb") as handle:
            rate = handle.getframerate()
            data = handle.readframes(handle.getnframes())
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, rate

    def result_path(self, job_id: str, fmt: str) -> Path:
        """Where the final audio of ``job_id`` is written."""
        return self.job_dir(job_id) / f"result.{fmt}"

    def result_file(self, job_id: str, fmt: str) -> Path:
        """The final audio of a finished job, symlinks resolved (see :meth:`Storage.stored_file`).

        Raises:
            NotFoundError: the file is gone, or resolves outside the allowed roots.
        """
        path = self.result_path(job_id, fmt)
        return self.storage.stored_file(
            path, f"job {job_id} succeeded but its audio file {path.name} is gone from storage"
        )

    def drop_parts(self, job_id: str) -> None:
        """Remove the unit parts once the result is written (they only serve resuming)."""
        shutil.rmtree(self.job_dir(job_id) / "parts", ignore_errors=True)
