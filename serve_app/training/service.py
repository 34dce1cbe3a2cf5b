"""Training runs started through the API: checked in the ingress, run as ``python -m train_jobs finetune``.

``submit`` runs the same pre-flight checks as the CLI (so a bad dataset is a 4xx at once), records
the run (``run.json``), saves the validated options as ``finetune.json``, starts
``python -m train_jobs finetune --config <that file> --dataset-in-storage`` with
:mod:`serve_app.runs` (a Ray Job, or a detached actor where there is no Jobs API) and writes
``job.json`` in the run directory. A run's view joins that record with the Ray Job's status and the
worker-written ``progress.json``. The id of a training job is its run name.

Everything here blocks: call it from a thread.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from serve_app import runs
from serve_app.datasets.service import tail
from serve_app.runs import RAY_JOB, RAY_TASK
from train_jobs.config import FinetuneConfig, write_config_file
from train_jobs.progress import FAILED, FINISHED, RUNNING, STOPPED, read_progress
from voice_core.errors import ConflictError, NotFoundError
from voice_core.settings import Settings
from voice_core.storage import Storage, atomic_write_json, read_json

NAMESPACE = "avs-training"
JOB_RECORD = "job.json"
LOG = "train.log"
CONFIG_FILE = "finetune.json"
LOG_TAIL_BYTES = 4000
QUEUED = "queued"
ACTIVE = frozenset({QUEUED, RUNNING})


def write_run_config(config: FinetuneConfig, run_dir: Path) -> Path:
    """Save the validated options the API starts a run with as ``finetune.json`` (no progress bar)."""
    return write_config_file(config.model_copy(update={"progress_bar": False}), run_dir / CONFIG_FILE)


def cli_args(config_file: Path) -> list[str]:
    """``-m train_jobs finetune ...`` running the options saved in ``config_file``.

    The options travel as JSON, not as command-line text (a test sentence with a comma or one
    starting with ``-`` would not survive that), and the dataset must be a name under
    ``storage/datasets``: the command runs in the storage root, where a name could match a folder.
    """
    return ["-m", "train_jobs", "finetune", "--config", str(config_file), "--dataset-in-storage"]


def _job_record(run_dir: Path) -> dict[str, Any] | None:
    return read_json(run_dir / JOB_RECORD)


def submit(config: FinetuneConfig, settings: Settings) -> dict[str, Any]:
    """Check and start a run (or resume one with the same options); returns its view.

    Raises:
        VoiceError: a pre-flight check failed (bad dataset, unknown model, clashing run name...).
        ConflictError: the run is already running.
    """
    from train_jobs.runner import prepare_run

    storage = Storage.from_settings(settings).ensure()
    run_dir = storage.run_dir(config.run_name)
    current = _job_record(run_dir)
    if current is not None and refresh(run_dir, current, settings).get("status") in ACTIVE:
        raise ConflictError(f"run {config.run_name!r} is already running; wait for it or DELETE it first")
    prepared = prepare_run(config, settings, dataset_in_storage=True)
    job_id = f"train-{config.run_name}-{secrets.token_hex(4)}"
    record = {
        "job_id": job_id,
        "run_name": config.run_name,
        "status": QUEUED,
        "submitted_at": round(time.time(), 3),
        "total_steps": prepared.total_steps,
        "resumed": prepared.resuming,
    }
    atomic_write_json(run_dir / JOB_RECORD, record)
    argv = runs.python_argv(*cli_args(write_run_config(config, run_dir)))
    reason = runs.submit_job(job_id, argv, settings, {"avs_training_run": config.run_name})
    if reason is None:
        record.update(runner=RAY_JOB)
    else:
        record.update(runner=RAY_TASK, runner_reason=reason)
        try:
            actor = runs.start_actor(job_id, NAMESPACE, settings)
            atomic_write_json(run_dir / JOB_RECORD, record)
            actor.run.remote(
                argv, str(settings.storage_root), str(run_dir / LOG), job_id, _Finish(str(run_dir), job_id)
            )
        except Exception as exc:
            record.update(status=FAILED, error=f"the run could not be started ({reason}; {runs.short(exc)})")
    atomic_write_json(run_dir / JOB_RECORD, record)
    return describe(storage, config.run_name, settings)


class _Finish:
    """Called by the actor with the command's exit status: records the outcome in ``job.json``."""

    def __init__(self, run_dir: str, job_id: str) -> None:
        self.run_dir, self.job_id = run_dir, job_id

    def __call__(self, exit_status: int) -> None:
        run_dir = Path(self.run_dir)
        record = _job_record(run_dir)
        if record is None or record.get("job_id") != self.job_id:
            return
        if record.get("status") != STOPPED:
            error = None
            if exit_status != 0:
                error = (read_progress(run_dir) or {}).get("error") or _exit_message(run_dir, exit_status)
            record.update(status=FINISHED if exit_status == 0 else FAILED, error=error)
        record.update(exit_status=exit_status, finished_at=round(time.time(), 3))
        atomic_write_json(run_dir / JOB_RECORD, record)


def _exit_message(run_dir: Path, exit_status: int) -> str:
    lines = [line for line in (tail(run_dir / LOG, 2000) or "").splitlines() if line.startswith("error:")]
    return lines[-1].removeprefix("error:").strip() if lines else f"the run exited with status {exit_status}"


def refresh(run_dir: Path, record: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Bring an active job record up to date with its runner (terminal outcomes are saved)."""
    if record.get("status") not in ACTIVE:
        return record
    if record.get("runner") == RAY_JOB:
        info, problem = runs.job_info(record["job_id"], settings)
        if info is None:
            return {**record, "job_status": "UNKNOWN", "error": problem}
        status = str(info.status)
        record = {**record, "job_status": status, "status": RUNNING if status == "RUNNING" else record["status"]}
        if info.status.is_terminal():
            outcome = {"SUCCEEDED": FINISHED, "STOPPED": STOPPED}.get(status, FAILED)
            error = None
            if outcome != FINISHED:
                error = (read_progress(run_dir) or {}).get("error") or runs.short(info.message or status, 1000)
            record.update(
                status=outcome,
                exit_status=info.driver_exit_code,
                error=error,
                finished_at=round((info.end_time or time.time() * 1000) / 1000, 3),
            )
            atomic_write_json(run_dir / JOB_RECORD, record)
        return record
    if record.get("runner") == RAY_TASK:
        current = _job_record(run_dir) or record
        if current.get("status") in ACTIVE and not runs.actor_alive(record["job_id"], NAMESPACE):
            current = _job_record(run_dir) or current  # it may have finished in between
            if current.get("status") in ACTIVE:
                if (read_progress(run_dir) or {}).get("status") == FINISHED:
                    # The training finished (rank 0 says so) but the actor died before recording it.
                    current.update(status=FINISHED, error=None, finished_at=round(time.time(), 3))
                else:
                    current.update(
                        status=FAILED,
                        error="the run's actor ended without an outcome (killed, or its node "
                        "died); POST the same options again to resume from the latest checkpoint",
                    )
                atomic_write_json(run_dir / JOB_RECORD, current)
        elif current.get("status") == QUEUED and (read_progress(run_dir) or {}).get("status") == RUNNING:
            current = {**current, "status": RUNNING}
        return current
    return record


def stop(storage: Storage, run_name: str, settings: Settings) -> dict[str, Any]:
    """Stop a running run (it can be resumed later by submitting the same options).

    Raises:
        NotFoundError: no such run.
        ConflictError: the run is not running.
    """
    run_dir = _existing_run(storage, run_name)
    record = _job_record(run_dir)
    if record is None or refresh(run_dir, record, settings).get("status") not in ACTIVE:
        raise ConflictError(f"run {run_name!r} is not running")
    record.update(status=STOPPED, stopped_at=round(time.time(), 3), error=None)
    atomic_write_json(run_dir / JOB_RECORD, record)
    problem = runs.stop(record["job_id"], record.get("runner"), NAMESPACE, settings)
    if problem:
        record.update(stop_problem=problem)
        atomic_write_json(run_dir / JOB_RECORD, record)
    return describe(storage, run_name, settings)


def _existing_run(storage: Storage, run_name: str) -> Path:
    run_dir = storage.run_dir(run_name)
    if not (run_dir / "run.json").is_file():
        raise NotFoundError(f"no training run {run_name!r} in storage/runs; list runs with GET /training/jobs")
    return run_dir


def run_names(storage: Storage) -> list[str]:
    """Names of the training runs (directories with a ``run.json``), sorted."""
    if not storage.runs.is_dir():
        return []
    return sorted(p.name for p in storage.runs.iterdir() if (p / "run.json").is_file())


def samples(storage: Storage, run_name: str) -> list[dict[str, Any]]:
    """The run's per-epoch samples with their URLs, oldest first."""
    run_dir = _existing_run(storage, run_name)
    found = []
    for path in run_dir.glob("samples/epoch_*.wav"):
        epoch = int(path.stem.removeprefix("epoch_")) if path.stem.removeprefix("epoch_").isdigit() else None
        if epoch is not None:
            found.append(
                {
                    "epoch": epoch,
                    "file": path.name,
                    "bytes": path.stat().st_size,
                    "url": f"/training/runs/{run_name}/samples/{path.name}",
                }
            )
    return sorted(found, key=lambda s: s["epoch"])


def sample_path(storage: Storage, run_name: str, filename: str) -> Path:
    """The file of one sample (``epoch_<N>.wav``), symlinks resolved (see :meth:`Storage.stored_file`).

    Raises:
        NotFoundError: no such run or sample, or the sample resolves outside the allowed roots.
    """
    from voice_core.storage import validate_component

    run_dir = _existing_run(storage, run_name)
    missing = f"run {run_name!r} has no sample {filename!r}; GET /training/samples?run={run_name}"
    path = run_dir / "samples" / validate_component(filename, "sample file")
    if not (filename.startswith("epoch_") and filename.endswith(".wav")):
        raise NotFoundError(missing)
    return storage.stored_file(path, missing)


def describe(storage: Storage, run_name: str, settings: Settings, detail: bool = True) -> dict[str, Any]:
    """A run as the API shows it: status, position, losses, samples and (with ``detail``) logs."""
    from train_jobs.runner import read_run_record
    from voice_core.checkpoints import TRAINING_COLUMNS, training_checkpoints

    run_dir = _existing_run(storage, run_name)
    run = read_run_record(run_dir) or {}
    record = _job_record(run_dir)
    if record is not None:
        record = refresh(run_dir, record, settings)
    progress = read_progress(run_dir) or {}
    status = (record or {}).get("status") or progress.get("status") or QUEUED
    view: dict[str, Any] = {
        "object": "training.job",
        "id": run_name,
        "run_name": run_name,
        "status": status,
        "method": run.get("identity", {}).get("method"),
        "base_model": run.get("identity", {}).get("base_model"),
        "dataset": run.get("dataset", {}),
        "epoch": progress.get("epoch", 0),
        "epochs": progress.get("epochs") or run.get("identity", {}).get("epochs"),
        "step": progress.get("step", 0),
        "total_steps": progress.get("total_steps") or (record or {}).get("total_steps"),
        "train_loss": progress.get("train_loss"),
        "eval_loss": progress.get("eval_loss"),
        "error": (record or {}).get("error") or (progress.get("error") if status == FAILED else None),
        "job_id": (record or {}).get("job_id"),
        "runner": (record or {}).get("runner"),
        "resumed": (record or {}).get("resumed"),
    }
    if not detail:
        return view
    view.update(
        options=run.get("identity"),
        runner_reason=(record or {}).get("runner_reason"),
        job_status=(record or {}).get("job_status"),
        submitted_at=(record or {}).get("submitted_at"),
        finished_at=(record or {}).get("finished_at") or progress.get("finished_at"),
        losses={"train": progress.get("train_loss_history", []), "eval": progress.get("eval_loss_history", [])},
        resumes=progress.get("resumes", []),
        samples=samples(storage, run_name),
        checkpoints=[
            {k: c.get(k) for k in TRAINING_COLUMNS}
            for c in training_checkpoints(storage.root, run_name, storage.allowed_mounts)
        ],
        logs_tail=_logs(run_dir, record, settings),
    )
    return view


def _logs(run_dir: Path, record: dict[str, Any] | None, settings: Settings) -> str | None:
    if record is None:
        return None
    if record.get("runner") == RAY_JOB:
        return runs.job_logs(record["job_id"], settings, LOG_TAIL_BYTES)
    return tail(run_dir / LOG, LOG_TAIL_BYTES)
