"""Training runs started through the API: checked in the ingress, run as ``python -m train_jobs finetune``.

``submit`` runs the same pre-flight checks as the CLI (so a bad dataset is a 4xx at once), records
the run (``run.json``), saves the validated options as ``finetune.json``, starts
``python -m train_jobs finetune --config <that file> --dataset-in-storage`` with
:class:`serve_app.runs.ManagedRun` (a Ray Job, or a detached actor where there is no Jobs API) and writes
``job.json`` in the run directory. A run's view joins that record with the Ray Job's status and the
worker-written ``progress.json``. The id of a training run is its run name.

Everything here blocks: call it from a thread.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from serve_app import runs
from serve_app.submissions import python_argv
from train_jobs.config import FinetuneConfig, write_config_file
from train_jobs.progress import FINISHED, read_progress
from voice_core.errors import ConflictError, NotFoundError
from voice_core.settings import Settings
from voice_core.status import Status
from voice_core.storage import Storage

CONFIG_FILE = "finetune.json"
QUEUED = Status.QUEUED
# The one lifecycle of runs, with the words training runs have always shown ("finished" for succeeded).
RUNS = runs.ManagedRun(
    noun="run",
    namespace="avs-training",
    record_file="job.json",
    log_file="train.log",
    words={**{status: status.value for status in Status}, Status.SUCCEEDED: FINISHED},
    read_progress=read_progress,
    vanished="the run's actor ended without an outcome (killed, or its node died); POST the same options "
    "again to resume from the latest checkpoint",
)


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


def submit(config: FinetuneConfig, settings: Settings) -> dict[str, Any]:
    """Check and start a training run (or resume one with the same options); returns its view.

    Raises:
        VoiceError: a pre-flight check failed (bad dataset, unknown model, clashing run name...).
        ConflictError: the run is already running.
    """
    from train_jobs.runner import prepare_run

    storage = Storage.from_settings(settings).ensure()
    run_dir = storage.run_dir(config.run_name)
    if RUNS.active(refresh(run_dir, settings)):
        raise ConflictError(f"run {config.run_name!r} is already running; wait for it or DELETE it first")
    prepared = prepare_run(config, settings, dataset_in_storage=True)
    record = {
        "job_id": f"train-{config.run_name}-{secrets.token_hex(4)}",
        "run_name": config.run_name,
        "status": RUNS.word(QUEUED),
        "submitted_at": round(time.time(), 3),
        "total_steps": prepared.total_steps,
        "resumed": prepared.resuming,
    }
    argv = python_argv(*cli_args(write_run_config(config, run_dir)))
    RUNS.submit(run_dir, record, argv, settings, {"avs_training_run": config.run_name})
    return describe(storage, config.run_name, settings)


def refresh(run_dir: Path, settings: Settings) -> dict[str, Any] | None:
    """The run's record (``job.json``) brought up to date with its runner; None before it was submitted."""
    record = RUNS.load(run_dir)
    return None if record is None else RUNS.refresh(run_dir, record, settings)


def stop(storage: Storage, run_name: str, settings: Settings) -> dict[str, Any]:
    """Stop a running run (it can be resumed later by submitting the same options).

    Raises:
        NotFoundError: no such run.
        ConflictError: the run is not running.
    """
    run_dir = _existing_run(storage, run_name)
    record = refresh(run_dir, settings)
    if record is None or not RUNS.active(record):
        raise ConflictError(f"run {run_name!r} is not running")
    RUNS.stop(run_dir, record, settings)
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
    record = refresh(run_dir, settings)
    progress = read_progress(run_dir) or {}
    status = (record or {}).get("status") or progress.get("status") or RUNS.word(QUEUED)
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
        "error": (record or {}).get("error") or (progress.get("error") if status == Status.FAILED else None),
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
        logs_tail=RUNS.logs_tail(run_dir, record, settings),
    )
    return view
