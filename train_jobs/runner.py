"""Driver side of a fine-tuning run: check everything, then run Ray Train's ``TorchTrainer``.

All checks (base model, dataset, language, clip lengths, total audio, run-name clash) happen here,
before any worker starts. The run lives in ``storage/runs/<run-name>/``: Ray Train's checkpoints
(``checkpoint_step<N>``) and state, ``run.json`` (the run's identity), ``progress.json``,
``tensorboard/`` and ``samples/``. Running the same options with the same run name again resumes
from the latest checkpoint (Ray Train restores a run from its name and storage path).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train_jobs.config import FinetuneConfig
from train_jobs.dataset import TrainingData, load_training_data, model_limits, steps_per_epoch
from train_jobs.model import base_config, training_files
from train_jobs.payload import WorkerPayload
from train_jobs.progress import FAILED, FINISHED, read_progress, update_progress
from voice_core.errors import ConflictError, NotFoundError
from voice_core.models import resolve_model
from voice_core.settings import Settings
from voice_core.storage import Storage, atomic_write_json, read_json

RUN_RECORD = "run.json"


@dataclass
class PreparedRun:
    """A checked run, ready for Ray Train."""

    config: FinetuneConfig
    run_dir: Path
    runs_root: Path
    data: TrainingData
    payload: WorkerPayload
    total_steps: int
    resuming: bool


def resolve_dataset(value: str, storage: Storage, *, in_storage: bool = False) -> Path:
    """The directory of a dataset: a path, or a name under ``storage/datasets``.

    Args:
        value: the ``dataset`` option.
        storage: the storage layout.
        in_storage: accept only a dataset name under ``storage/datasets`` (runs started over HTTP):
            never a path, nor a directory of that name in the working directory.

    Raises:
        InvalidInputError: with ``in_storage``, ``value`` is not a safe name.
        NotFoundError: with ``in_storage``, no such dataset exists.
    """
    if in_storage:
        directory = storage.dataset_dir(value)
        if not directory.is_dir():
            raise NotFoundError(
                f"dataset {value!r} does not exist in storage/datasets; build it first (POST /datasets or "
                "`python -m data_prep build`) and list the built ones with GET /datasets"
            )
        return directory
    path = Path(value).expanduser()
    if path.is_dir() or "/" in value or value.startswith("."):
        return path.resolve()
    return storage.dataset_dir(value)


def read_run_record(run_dir: Path) -> dict[str, Any] | None:
    """The saved ``run.json`` of a run, or None."""
    return read_json(run_dir / RUN_RECORD)


def prepare_run(config: FinetuneConfig, settings: Settings, *, dataset_in_storage: bool = False) -> PreparedRun:
    """Check the options, the base model and the dataset, and record the run.

    With ``dataset_in_storage`` the dataset must be a name under ``storage/datasets`` (see
    :func:`resolve_dataset`) and messages name it ``storage/datasets/<name>``, not by its server path.

    Raises:
        NotFoundError: unknown base model.
        ModelFilesMissingError: the base model lacks files training needs.
        InvalidInputError: the dataset is missing, empty or malformed, or unsuitable for the model.
        ConflictError: the run name exists with different options.
    """
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    storage = Storage.from_settings(settings).ensure()
    model_id, model_dir = resolve_model(settings, storage, config.base_model)
    files = training_files(model_dir, storage)
    base = base_config(files)
    tokenizer = VoiceBpeTokenizer(str(files.model.vocab))
    limits = model_limits(base, config.max_text_tokens)
    dataset_dir = resolve_dataset(config.dataset, storage, in_storage=dataset_in_storage)
    data = load_training_data(
        dataset_dir,
        tokenizer=tokenizer,
        limits=limits,
        language=config.language,
        min_audio_s=config.min_audio_s,
        shown=storage.shown(dataset_dir) if dataset_in_storage else None,
    )
    run_dir = storage.run_dir(config.run_name)
    saved = read_run_record(run_dir)
    if saved is not None:
        differences = config.differences(saved.get("identity", {}))
        if differences:
            raise ConflictError(
                f"run {config.run_name!r} exists with different options ({'; '.join(differences)}); "
                "choose a new --run-name, or repeat the original options to resume it"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ConflictError(f"{storage.shown(run_dir)} exists but is not a training run; choose another --run-name")
    run_dir.mkdir(parents=True, exist_ok=True)
    if saved is None:
        atomic_write_json(
            run_dir / RUN_RECORD,
            {
                "identity": config.identity(),
                "base_model_dir": str(model_dir),
                "dataset": data.summary(),
                "created_at": round(time.time(), 3),
            },
        )
    _, per_epoch = steps_per_epoch(len(data.train), config.batch_size, config.num_workers, config.grad_accum_steps)
    payload = WorkerPayload(
        config=config,
        run_dir=run_dir,
        files=files,
        language=data.language,
        speaker_wav=data.eval[0].audio_file,
        train=[clip.sample(data.language) for clip in data.train],
        eval=[clip.sample(data.language) for clip in data.eval],
        base_model_id=model_id,
    )
    return PreparedRun(config, run_dir, storage.runs, data, payload, per_epoch * config.epochs, saved is not None)


def _follow(run_dir: Path, total: int, stop: threading.Event) -> None:
    """Draw a progress bar from ``progress.json`` until ``stop`` is set."""
    from tqdm import tqdm

    with tqdm(total=total, unit="step", desc=f"training {run_dir.name}", dynamic_ncols=True) as bar:
        while not stop.wait(1.0):
            progress = read_progress(run_dir) or {}
            step = int(progress.get("step") or 0)
            bar.total = int(progress.get("total_steps") or total)
            bar.n = min(step, bar.total)
            loss = progress.get("train_loss")
            bar.set_postfix(epoch=progress.get("epoch"), loss=loss, eval=progress.get("eval_loss"), refresh=False)
            bar.refresh()


def trainer_for(prepared: PreparedRun, callbacks: list[Any] | None = None) -> Any:
    """The Ray Train ``TorchTrainer`` of a prepared run (``callbacks``: Ray Train user callbacks)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from train_jobs.loop import train_loop_per_worker

    cfg = prepared.config
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = cfg.gpus_per_worker
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=prepared.payload.loop_config(),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=cfg.run_name,
            storage_path=str(prepared.runs_root),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            callbacks=callbacks,
            checkpoint_config=CheckpointConfig(
                num_to_keep=cfg.keep_checkpoints, checkpoint_score_attribute="eval_loss", checkpoint_score_order="min"
            ),
        ),
    )


def finetune(config: FinetuneConfig, settings: Settings, *, dataset_in_storage: bool = False) -> dict[str, Any]:
    """Run (or resume) a fine-tuning run to the end on the connected Ray cluster.

    Returns:
        A summary: run directory, steps, final losses, latest checkpoint path.

    Raises:
        VoiceError: a check failed before training (see :func:`prepare_run`).
        RuntimeError: training failed (the message has Ray Train's reason); ``progress.json`` says so too.
    """
    prepared = prepare_run(config, settings, dataset_in_storage=dataset_in_storage)
    trainer = trainer_for(prepared)
    stop = threading.Event()
    follower = None
    if config.progress_bar:
        follower = threading.Thread(target=_follow, args=(prepared.run_dir, prepared.total_steps, stop), daemon=True)
        follower.start()
    try:
        result = trainer.fit()
    except Exception as exc:
        update_progress(prepared.run_dir, status=FAILED, error=" ".join(str(exc).split())[:2000])
        raise RuntimeError(f"training run {config.run_name!r} failed: {exc}") from exc
    finally:
        stop.set()
        if follower is not None:
            follower.join(timeout=5)
    if result.error is not None:
        update_progress(prepared.run_dir, status=FAILED, error=str(result.error)[:2000])
        raise RuntimeError(f"training run {config.run_name!r} failed: {result.error}")
    progress = update_progress(prepared.run_dir, status=FINISHED, finished_at=round(time.time(), 3))
    return {
        "run_name": config.run_name,
        "run_dir": str(prepared.run_dir),
        "resumed": prepared.resuming,
        "step": progress.get("step"),
        "total_steps": progress.get("total_steps"),
        "train_loss": progress.get("train_loss"),
        "eval_loss": progress.get("eval_loss"),
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "dataset": prepared.data.summary(),
    }


def check_only(config: FinetuneConfig, settings: Settings, *, dataset_in_storage: bool = False) -> dict[str, Any]:
    """Run every pre-flight check without training; returns what the run would do, with its options."""
    prepared = prepare_run(config, settings, dataset_in_storage=dataset_in_storage)
    if not prepared.resuming:
        (prepared.run_dir / RUN_RECORD).unlink(missing_ok=True)
        try:
            prepared.run_dir.rmdir()
        except OSError:
            pass
    return {
        "run_dir": str(prepared.run_dir),
        "total_steps": prepared.total_steps,
        "dataset": prepared.data.summary(),
        "options": config.model_dump(mode="json"),
    }
