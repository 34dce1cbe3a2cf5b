"""Managed runs: a project command (dataset build, training run) run on the cluster, and its record.

A *run* is submitted with :mod:`serve_app.submissions` (a Ray Job, else a detached actor);
:class:`ManagedRun` is its one lifecycle (submit, refresh, finish, stop, logs), parameterised by the
record file, actor namespace, log file, status words and the worker's ``progress.json`` of each kind
of run.

Everything here blocks (HTTP to the dashboard, GCS calls, files): call it from a thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_app.submissions import (
    LOG_TAIL_BYTES,
    RAY_JOB,
    RAY_TASK,
    actor_alive,
    jobs_api_info,
    jobs_api_logs,
    short,
    start_actor,
    stop_submission,
    submit_to_jobs_api,
    tail,
)
from voice_core.settings import Settings
from voice_core.status import ACTIVE, Status
from voice_core.storage import atomic_write_json, read_json

# A record still without a runner this long after it was written belongs to a submission that died.
ABANDONED_SUBMIT_S = 120.0
# How a Ray Job that ended maps onto a run's outcome (any other terminal status: failed).
_RAY_OUTCOMES = {"SUCCEEDED": Status.SUCCEEDED, "STOPPED": Status.STOPPED}


def _now() -> float:
    return round(time.time(), 3)


@dataclass(frozen=True)
class ManagedRun:
    """The lifecycle of one kind of run (training run, dataset build), whose record lives in a directory.

    The record (``record_file``) holds ``job_id`` (the submission id; the field name is kept for
    the records already stored), ``runner``, ``runner_reason``, ``status`` (in this kind's words),
    ``job_status`` (Ray's word), ``error``, ``exit_status``, ``submitted_at`` and ``finished_at``.

    Attributes:
        noun: what the API calls one run ("run", "build"), for messages.
        namespace: Ray namespace of the actors that run commands without the Jobs API.
        record_file: the record's file name in the run's directory.
        log_file: where an actor-run command writes its output, in the run's directory.
        words: the word stored and shown for each :class:`Status` (the first status with a word
            is the one read back for it).
        read_progress: reads the worker's ``progress.json`` in the run's directory (its ``error``,
            and a ``status`` in this kind's words where the worker writes one).
        vanished: the error of a run whose actor ended without recording an outcome.
    """

    noun: str
    namespace: str
    record_file: str
    log_file: str
    words: Mapping[Status, str]
    read_progress: Callable[[Path], dict[str, Any] | None]
    vanished: str

    def word(self, status: Status) -> str:
        """The word this kind stores and shows for ``status``."""
        return self.words[status]

    def state(self, record: dict[str, Any] | None) -> Status | None:
        """The :class:`Status` a record (or the worker's progress) is in, from its ``status`` word."""
        word = (record or {}).get("status")
        return next((status for status in Status if self.words[status] == word), None)

    def active(self, record: dict[str, Any] | None) -> bool:
        """Whether the run of ``record`` is queued or running."""
        return self.state(record) in ACTIVE

    def load(self, directory: Path) -> dict[str, Any] | None:
        """The record in ``directory`` (None when there is none)."""
        return read_json(directory / self.record_file)

    def save(self, directory: Path, record: dict[str, Any]) -> None:
        """Rewrite the record in ``directory`` atomically."""
        atomic_write_json(directory / self.record_file, record)

    def submit(
        self, directory: Path, record: dict[str, Any], argv: list[str], settings: Settings, metadata: dict[str, str]
    ) -> Exception | None:
        """Save ``record`` and start ``argv`` for it: a Ray Job, else an actor (``runner_reason`` says why).

        Returns:
            None once started; the exception when neither runner took it (the record says it failed).
        """
        submission_id = record["job_id"]
        self.save(directory, record)  # visible at once; the runner is set below
        reason = submit_to_jobs_api(submission_id, argv, settings, metadata)
        if reason is None:
            record.update(runner=RAY_JOB, job_status="PENDING")
            self.save(directory, record)
            return None
        record.update(runner=RAY_TASK, runner_reason=reason, job_status="RUNNING")
        try:
            # Created (and named) before the record says so, so a reader never sees a ray_task run
            # whose actor does not exist yet; started after, so the actor's final write comes last.
            actor = start_actor(submission_id, self.namespace, settings)
            self.save(directory, record)
            finish = Finish(self, str(directory), submission_id)
            actor.run.remote(argv, str(settings.storage_root), str(directory / self.log_file), submission_id, finish)
        except Exception as exc:
            error = f"the {self.noun} could not be started ({reason}; the Ray actor: {short(exc)})"
            self._settle(directory, record, Status.FAILED, error)
            return exc
        return None

    def finish(self, directory: Path, submission_id: str, exit_status: int) -> None:
        """Record the exit status of an actor-run command (unless a newer run replaced the record)."""
        record = self.load(directory)
        if record is None or record.get("job_id") != submission_id:
            return
        if self.state(record) != Status.STOPPED:
            error = None
            if exit_status != 0:
                error = self._worker_error(directory) or self._exit_message(directory, exit_status)
            outcome = Status.SUCCEEDED if exit_status == 0 else Status.FAILED
            record.update(status=self.word(outcome), job_status=outcome.name, error=error)
        record.update(exit_status=exit_status, finished_at=_now())
        self.save(directory, record)

    def refresh(self, directory: Path, record: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """Bring an active record up to date with its runner (terminal outcomes are saved)."""
        if not self.active(record):
            return record
        if record.get("runner") == RAY_JOB:
            return self._refresh_ray_job(directory, record, settings)
        if record.get("runner") == RAY_TASK:
            return self._refresh_actor(directory, record)
        if time.time() - float(record.get("submitted_at") or 0) > ABANDONED_SUBMIT_S:
            error = f"the {self.noun} was never started (the service stopped while starting it); POST it again"
            return self._settle(directory, dict(record), Status.FAILED, error)
        return record  # otherwise: being submitted right now

    def stop(self, directory: Path, record: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """Mark the run stopped and ask its runner to stop it (``stop_problem`` says when it could not)."""
        record.update(status=self.word(Status.STOPPED), stopped_at=_now(), error=None)
        self.save(directory, record)
        problem = stop_submission(record["job_id"], record.get("runner"), self.namespace, settings)
        if problem:
            record.update(stop_problem=problem)
            self.save(directory, record)
        return record

    def logs_tail(self, directory: Path, record: dict[str, Any] | None, settings: Settings) -> str | None:
        """The last few KB of the run's output (None before it has a runner)."""
        record = record or {}
        if record.get("runner") == RAY_TASK:
            return tail(directory / self.log_file, LOG_TAIL_BYTES)
        if record.get("runner") == RAY_JOB:
            return jobs_api_logs(record["job_id"], settings, LOG_TAIL_BYTES)
        return None

    def _refresh_ray_job(self, directory: Path, record: dict[str, Any], settings: Settings) -> dict[str, Any]:
        info, problem = jobs_api_info(record["job_id"], settings)
        if info is None:
            return {**record, "job_status": "UNKNOWN", "error": problem}
        ray_status = str(info.status)
        record = {**record, "job_status": ray_status}
        if ray_status == "RUNNING":
            record["status"] = self.word(Status.RUNNING)
        if not info.status.is_terminal():
            return record
        outcome = _RAY_OUTCOMES.get(ray_status, Status.FAILED)
        error = None
        if outcome != Status.SUCCEEDED:
            error = self._worker_error(directory) or short(info.message or f"the Ray Job ended {ray_status}", 1000)
        finished = info.end_time / 1000 if info.end_time else time.time()
        record.update(status=self.word(outcome), exit_status=info.driver_exit_code, error=error)
        record.update(finished_at=round(finished, 3))
        self.save(directory, record)
        return record

    def _refresh_actor(self, directory: Path, record: dict[str, Any]) -> dict[str, Any]:
        current = self.load(directory) or record
        if not self.active(current) or current.get("job_id") != record.get("job_id"):
            return current
        if actor_alive(record["job_id"], self.namespace):
            if self.state(current) == Status.QUEUED and self._worker_state(directory) == Status.RUNNING:
                return {**current, "status": self.word(Status.RUNNING)}
            return current
        current = self.load(directory) or current  # it may have finished in between
        if not self.active(current):
            return current
        if self._worker_state(directory) == Status.SUCCEEDED:
            # The work finished (the worker says so) but the actor died before recording it.
            return self._settle(directory, current, Status.SUCCEEDED, None)
        return self._settle(directory, current, Status.FAILED, self.vanished)

    def _settle(self, directory: Path, record: dict[str, Any], outcome: Status, error: str | None) -> dict[str, Any]:
        record.update(status=self.word(outcome), job_status=outcome.name, error=error, finished_at=_now())
        self.save(directory, record)
        return record

    def _worker_state(self, directory: Path) -> Status | None:
        return self.state(self.read_progress(directory))

    def _worker_error(self, directory: Path) -> str | None:
        return (self.read_progress(directory) or {}).get("error")

    def _exit_message(self, directory: Path, exit_status: int) -> str:
        lines = (tail(directory / self.log_file, 2000) or "").splitlines()
        errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
        return errors[-1] if errors else f"the {self.noun} exited with status {exit_status}"


class Finish:
    """Handed to the actor: records the command's exit status in the run's record when it ends."""

    def __init__(self, run: ManagedRun, directory: str, submission_id: str) -> None:
        self.run, self.directory, self.submission_id = run, directory, submission_id

    def __call__(self, exit_status: int) -> None:
        """Record ``exit_status`` (see :meth:`ManagedRun.finish`)."""
        self.run.finish(Path(self.directory), self.submission_id, exit_status)
