"""Starting and following dataset builds: a Ray Job where the cluster's Jobs API answers, else a detached actor.

Both runners execute the same command, ``python -m data_prep build --input ... --output ...``, with
the interpreter of the ingress, the storage root as working directory and the environment passed
explicitly (``AVS_STORAGE_ROOT`` and friends), so nothing depends on where the ingress was started.

- ``ray_job``: submitted with :class:`ray.job_submission.JobSubmissionClient` to the dashboard named
  by ``AVS_DASHBOARD_ADDRESS`` or, by default, to the dashboard of the cluster the service runs on
  (its address is in the GCS key-value store). With Ray's token auth on (the default since 2.59),
  the client sends the cluster's token (``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN*`` or ``~/.ray/auth_token``),
  which every process of the cluster already has.
- ``ray_task``: where there is no dashboard (the embedded default starts Ray without one) or it
  refused the job, a detached actor (so it outlives the ingress replica) runs the command as a
  subprocess, writes its output to ``build.log`` and the outcome into ``build.json``, then exits.

Everything here blocks (HTTP to the dashboard, GCS calls, files): call it from a thread.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from serve_app.datasets import (
    BUILDING,
    FAILED,
    LOG,
    PROGRESS,
    READY,
    RECORD,
    BuildOptions,
    DatasetStore,
    cli_args,
    manifest_summary,
    new_record,
    read_json,
    status_without_record,
    tail,
)
from voice_core.settings import Settings
from voice_core.storage import atomic_write_json

RAY_JOB, RAY_TASK = "ray_job", "ray_task"
NAMESPACE = "avs-datasets"
# CPUs of the process that drives a build (the Ray Data stages reserve their own).
DRIVER_NUM_CPUS = 0.1
LOG_TAIL_BYTES = 4000
# After the Jobs API failed, builds go straight to the actor for this long (a failed submit can take 10 s).
RETRY_JOBS_API_S = 60.0
# A record still without a runner this long after it was written belongs to a submission that died.
ABANDONED_SUBMIT_S = 120.0

_lock = threading.Lock()
_clients: dict[str, Any] = {}
_unavailable: dict[str, tuple[float, str]] = {}


def build_env(settings: Settings) -> dict[str, str]:
    """Environment of a build: the settings it needs, from the ingress's settings (not its environment)."""
    env = {"AVS_STORAGE_ROOT": str(settings.storage_root), "AVS_LOG_LEVEL": settings.log_level, "PYTHONUNBUFFERED": "1"}
    if settings.allowed_mounts:
        env["AVS_ALLOWED_MOUNTS"] = ",".join(str(path) for path in settings.allowed_mounts)
    return env


def dashboard_address(settings: Settings) -> str | None:
    """The Jobs API address: ``AVS_DASHBOARD_ADDRESS``, else the current cluster's dashboard, else None."""
    if settings.dashboard_address:
        return settings.dashboard_address
    try:
        from ray._private.services import get_webui_url_from_internal_kv

        url = get_webui_url_from_internal_kv()
    except Exception:  # not connected to Ray, or the internal API moved: no Jobs API then
        return None
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


def _forget_jobs_api(address: str, reason: str) -> None:
    with _lock:
        _clients.pop(address, None)
        _unavailable[address] = (time.monotonic() + RETRY_JOBS_API_S, reason)


def jobs_client(settings: Settings) -> tuple[Any | None, str | None]:
    """A (cached) Jobs API client, or ``(None, why not)``."""
    address = dashboard_address(settings)
    if address is None:
        return None, "the cluster has no dashboard (Jobs API); set AVS_DASHBOARD_ADDRESS or start Ray with it"
    with _lock:
        if address in _clients:
            return _clients[address], None
        failed = _unavailable.get(address)
        if failed is not None and time.monotonic() < failed[0]:
            return None, failed[1]
    try:
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(address)
    except Exception as exc:
        reason = f"the Jobs API at {address} did not answer ({_short(exc)})"
        _forget_jobs_api(address, reason)
        return None, reason
    with _lock:
        _clients[address] = client
    return client, None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    record = new_record(name, options, source, previous)
    record["job_id"] = job_id = f"dataset-{name}-{secrets.token_hex(4)}"
    store.save_record(record)  # visible as building at once; the runner is set below
    argv = [sys.executable, *cli_args(options, store.recordings_dir(source), output, settings.dataset_build_cpus)]
    env, cwd = build_env(settings), str(settings.storage_root)
    client, reason = jobs_client(settings)
    if client is not None:
        try:
            client.submit_job(
                entrypoint=f"cd {shlex.quote(cwd)} && {shlex.join(argv)}",
                submission_id=job_id,
                runtime_env={"env_vars": env},
                entrypoint_num_cpus=DRIVER_NUM_CPUS,
                metadata={"avs_dataset": name},
            )
        except Exception as exc:
            reason = f"the Jobs API did not take the build ({_short(exc)})"
            _forget_jobs_api(dashboard_address(settings) or "", reason)
        else:
            record.update(runner=RAY_JOB, job_status="PENDING")
            store.save_record(record)
            return record
    import ray

    record.update(runner=RAY_TASK, runner_reason=reason, job_status="RUNNING")
    try:
        # Created (and named) before the record says so, so a reader never sees a ray_task build
        # whose actor does not exist yet; started after, so the actor's final write comes last.
        actor = (
            ray.remote(BuildActor)
            .options(
                name=job_id,
                namespace=NAMESPACE,
                lifetime="detached",
                num_cpus=DRIVER_NUM_CPUS,
                max_restarts=0,
                runtime_env={"env_vars": env},
            )
            .remote()
        )
        store.save_record(record)
        actor.run.remote(argv, cwd, str(output), job_id)
    except Exception as exc:
        error = f"the build could not be started ({reason}; the Ray actor: {_short(exc)})"
        record.update(status=FAILED, job_status="FAILED", error=error, finished_at=round(time.time(), 3))
        store.save_record(record)
        raise
    return record


class BuildActor:
    """Runs one build as a subprocess, records its outcome in ``build.json``, then exits."""

    def run(self, argv: list[str], cwd: str, dataset_dir: str, job_id: str) -> int:
        """Run the build command to the end (its output goes to ``build.log``)."""
        import ray

        env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address, PYTHONUNBUFFERED="1")
        directory = Path(dataset_dir)
        with (directory / LOG).open("ab") as log:
            log.write(f"=== build {job_id} ({time.strftime('%Y-%m-%d %H:%M:%S')}): {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                code = subprocess.run(
                    argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
                ).returncode
            except OSError as exc:
                log.write(f"could not start the build: {exc}\n".encode())
                code = 127
        finish_task_record(directory, job_id, code)
        ray.actor.exit_actor()
        return code


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
    client, reason = jobs_client(settings)
    if client is None:
        return {**record, "job_status": "UNKNOWN", "error": f"cannot ask the Jobs API: {reason}"}
    try:
        info = client.get_job_info(record["job_id"])
    except Exception as exc:
        return {**record, "job_status": "UNKNOWN", "error": f"cannot ask the Jobs API: {_short(exc)}"}
    record = {**record, "job_status": str(info.status)}
    if not info.status.is_terminal():
        return record
    ok = str(info.status) == "SUCCEEDED"
    error = None
    if not ok:
        progress = store.progress(record["name"]) or {}
        error = progress.get("error") or _short(info.message or f"the job ended {info.status}", 1000)
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
    import ray

    current = store.load_record(record["name"]) or record
    if current.get("status") != BUILDING or current.get("job_id") != record.get("job_id"):
        return current
    try:
        ray.get_actor(record["job_id"], namespace=NAMESPACE)
        return current
    except ValueError:
        pass
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
        client, _ = jobs_client(settings)
        if client is not None:
            try:
                return client.get_job_logs(record["job_id"])[-LOG_TAIL_BYTES:]
            except Exception:
                return None
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
