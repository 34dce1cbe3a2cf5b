"""Starting and following dataset builds, run by :mod:`serve_app.runs` (a Ray Job, else a detached actor).

The command is ``python -m data_prep build --config build_config.json --input ... --output ...``; an
actor-run build writes its output to ``build.log`` and its outcome into ``build.json`` when it ends.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from data_prep.config import write_config_file
from serve_app import runs
from serve_app.datasets.service import (
    BUILDING,
    CONFIG,
    FAILED,
    LOG,
    PROGRESS,
    READY,
    RECORD,
    BuildOptions,
    DatasetStore,
    check_options,
    cli_args,
    manifest_summary,
    new_record,
    status_without_record,
    tail,
)
from serve_app.runs import RAY_JOB, RAY_TASK
from voice_core.settings import Settings
from voice_core.storage import atomic_write_json, read_json

NAMESPACE = "avs-datasets"
LOG_TAIL_BYTES = 4000
# A record still without a runner this long after it was written belongs to a submission that died.
ABANDONED_SUBMIT_S = 120.0


def submit(
    store: DatasetStore,
    name: str,
    options: BuildOptions,
    source: str,
    previous: dict[str, Any] | None,
    settings: Settings,
) -> dict[str, Any]:
    """Start a build of dataset ``name`` from ``recordings/<source>`` and return its saved record.

    Tries the Jobs API first; falls back to a detached actor and says why in ``runner_reason``.
    """
    output = store.dataset_dir(name)
    output.mkdir(parents=True, exist_ok=True)
    (output / PROGRESS).unlink(missing_ok=True)  # an earlier build's; the new build writes its own
    config_file = write_config_file(check_options(options, settings.dataset_build_cpus), output / CONFIG)
    record = new_record(name, options, source, previous)
    record["job_id"] = job_id = f"dataset-{name}-{secrets.token_hex(4)}"
    store.save_record(record)  # visible as building at once; the runner is set below
    argv = runs.python_argv(*cli_args(config_file, store.recordings_dir(source), output))
    reason = runs.submit_job(job_id, argv, settings, {"avs_dataset": name})
    if reason is None:
        record.update(runner=RAY_JOB, job_status="PENDING")
        store.save_record(record)
        return record
    record.update(runner=RAY_TASK, runner_reason=reason, job_status="RUNNING")
    try:
        # Created (and named) before the record says so, so a reader never sees a ray_task build
        # whose actor does not exist yet; started after, so the actor's final write comes last.
        actor = runs.start_actor(job_id, NAMESPACE, settings)
        store.save_record(record)
        actor.run.remote(argv, str(settings.storage_root), str(output / LOG), job_id, _Finish(str(output), job_id))
    except Exception as exc:
        error = f"the build could not be started ({reason}; the Ray actor: {runs.short(exc)})"
        record.update(status=FAILED, job_status="FAILED", error=error, finished_at=round(time.time(), 3))
        store.save_record(record)
        raise
    return record


class _Finish:
    """Called by the actor with the build's exit status: records the outcome."""

    def __init__(self, dataset_dir: str, job_id: str) -> None:
        self.dataset_dir, self.job_id = dataset_dir, job_id

    def __call__(self, exit_status: int) -> None:
        finish_task_record(Path(self.dataset_dir), self.job_id, exit_status)


def finish_task_record(directory: Path, job_id: str, exit_status: int) -> None:
    """Write the outcome of an actor-run build into its record (unless a newer build replaced it)."""
    record = read_json(directory / RECORD)
    if record is None or record.get("job_id") != job_id:
        return
    ok = exit_status == 0
    error = None
    if not ok:
        error = (read_json(directory / PROGRESS) or {}).get("error") or f"the build exited with status {exit_status}"
    record.update(
        status=READY if ok else FAILED,
        job_status="SUCCEEDED" if ok else "FAILED",
        exit_status=exit_status,
        error=error,
        finished_at=round(time.time(), 3),
    )
    atomic_write_json(directory / RECORD, record)


def refresh(store: DatasetStore, record: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Bring a building record up to date with its runner (terminal outcomes are saved)."""
    if record.get("status") != BUILDING:
        return record
    if record.get("runner") == RAY_JOB:
        return _refresh_job(store, record, settings)
    if record.get("runner") == RAY_TASK:
        return _refresh_task(store, record)
    if time.time() - float(record.get("submitted_at") or 0) > ABANDONED_SUBMIT_S:
        record = {**record, "status": FAILED, "job_status": "FAILED", "finished_at": round(time.time(), 3)}
        record["error"] = "the build was never started (the service stopped while starting it); POST it again"
        store.save_record(record)
    return record  # otherwise: being submitted right now


def _refresh_job(store: DatasetStore, record: dict[str, Any], settings: Settings) -> dict[str, Any]:
    info, problem = runs.job_info(record["job_id"], settings)
    if info is None:
        return {**record, "job_status": "UNKNOWN", "error": problem}
    record = {**record, "job_status": str(info.status)}
    if not info.status.is_terminal():
        return record
    ok = str(info.status) == "SUCCEEDED"
    error = None
    if not ok:
        progress = store.progress(record["name"]) or {}
        error = progress.get("error") or runs.short(info.message or f"the job ended {info.status}", 1000)
    finished = info.end_time / 1000 if info.end_time else time.time()
    record.update(
        status=READY if ok else FAILED,
        exit_status=info.driver_exit_code,
        error=error,
        finished_at=round(finished, 3),
    )
    store.save_record(record)
    return record


def _refresh_task(store: DatasetStore, record: dict[str, Any]) -> dict[str, Any]:
    current = store.load_record(record["name"]) or record
    if current.get("status") != BUILDING or current.get("job_id") != record.get("job_id"):
        return current
    if runs.actor_alive(record["job_id"], NAMESPACE):
        return current
    current = store.load_record(record["name"]) or current  # it may have finished in between
    if current.get("status") == BUILDING:
        current.update(
            status=FAILED,
            job_status="FAILED",
            error="the build actor ended without recording an outcome (killed, or its node died); POST the "
            "dataset again to resume it (finished recordings are kept)",
            finished_at=round(time.time(), 3),
        )
        store.save_record(current)
    return current


def logs_tail(store: DatasetStore, record: dict[str, Any], settings: Settings) -> str | None:
    """The last few KB of the latest build's output."""
    if record.get("runner") == RAY_TASK:
        return tail(store.dataset_dir(record["name"]) / LOG, LOG_TAIL_BYTES)
    if record.get("runner") == RAY_JOB:
        return runs.job_logs(record["job_id"], settings, LOG_TAIL_BYTES)
    return None


def describe(store: DatasetStore, name: str, settings: Settings, detail: bool = False) -> dict[str, Any]:
    """A dataset as the API shows it: status and counts, and with ``detail`` the manifest, progress and logs.

    Raises:
        InvalidInputError: ``name`` is not a safe name.
        NotFoundError: no such dataset.
    """
    store.existing_dir(name)
    record = store.load_record(name)
    if record is not None:
        record = refresh(store, record, settings)
    manifest = store.manifest(name)
    progress = store.progress(name)
    status = record["status"] if record else status_without_record(manifest, progress)
    options = (record or {}).get("options") or {}
    view: dict[str, Any] = {
        "object": "dataset",
        "name": name,
        "status": status,
        "language": options.get("language") or (manifest or {}).get("language"),
        "clips": (manifest or {}).get("kept", 0),
        "clips_total": (manifest or {}).get("clips", 0),
        "kept_duration_s": (manifest or {}).get("kept_duration_s", 0.0),
        "total_duration_s": (manifest or {}).get("total_duration_s", 0.0),
        "runner": (record or {}).get("runner"),
        "job_id": (record or {}).get("job_id"),
        "error": (record or {}).get("error") or ((progress or {}).get("error") if status == FAILED else None),
    }
    if not detail:
        return view
    keys = ("options", "source", "runner_reason", "job_status", "exit_status", "submitted_at", "finished_at")
    view.update({key: (record or {}).get(key) for key in keys})
    view["previous_builds"] = (record or {}).get("previous_builds", [])
    view["progress"] = progress
    view["manifest"] = manifest_summary(manifest) if manifest else None
    view["clips_url"] = f"/datasets/{name}/clips"
    view["logs_tail"] = logs_tail(store, record, settings) if record else None
    return view
