"""Hyperparameter search with Ray Tune: a grid over learning rate, LoRA rank/alpha, batch size, epochs.

Each trial is an ordinary fine-tuning run named ``<search>-<hash of its values>`` (so it can be
inspected, resumed and exported like any other run), launched by a Tune function that runs a
``TorchTrainer`` and forwards its reports to Tune (``TuneReportCallback``, the Ray Train V2 way).
Trials run in parallel as far as the cluster's resources and ``max_concurrent`` allow. The results
table (and the best trial by eval loss) is written to ``storage/runs/<search>/search.json``.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from train_jobs.config import FinetuneConfig, parse_config
from voice_core.errors import InvalidInputError
from voice_core.settings import Settings
from voice_core.storage import Storage, atomic_write_json

SEARCHABLE: tuple[str, ...] = ("lr", "lora_rank", "lora_alpha", "batch_size", "epochs")
SEARCH_RECORD = "search.json"
TRIAL_DRIVER_CPUS = 0.1


def trial_name(search_name: str, values: dict[str, Any]) -> str:
    """Deterministic run name of the trial with ``values``."""
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]
    return f"{search_name}-{digest}"


def _trial(values: dict[str, Any], base: dict[str, Any], settings: Settings) -> None:
    from ray.tune.integration.ray_train import TuneReportCallback

    from train_jobs.runner import prepare_run, trainer_for

    config = FinetuneConfig(
        **{**base, **values, "run_name": trial_name(base["run_name"], values), "progress_bar": False}
    )
    trainer = trainer_for(prepare_run(config, settings), callbacks=[TuneReportCallback()])
    trainer.fit()


def search(
    base: FinetuneConfig, space: dict[str, list[Any]], settings: Settings, max_concurrent: int = 2
) -> dict[str, Any]:
    """Run every combination in ``space`` (a grid) as a trial and return the results table.

    Args:
        base: options shared by all trials; ``run_name`` names the search.
        space: searchable option -> values to try (see ``SEARCHABLE``).
        settings: service settings (storage root).
        max_concurrent: trials running at once at most.

    Raises:
        InvalidInputError: an unknown or empty search dimension, or fewer than two trials.
    """
    from ray import tune

    unknown = sorted(set(space) - set(SEARCHABLE))
    if unknown:
        raise InvalidInputError(f"cannot search over {', '.join(unknown)}; searchable: {', '.join(SEARCHABLE)}")
    if any(not values for values in space.values()):
        raise InvalidInputError("every search dimension needs at least one value")
    trials = 1
    for values in space.values():
        trials *= len(values)
    if trials < 2:
        raise InvalidInputError("a search needs at least two trials; give more than one value to some option")
    for combination in _grid(space):  # every trial's options are valid before anything runs
        parse_config({**base.model_dump(), **combination})
    storage = Storage.from_settings(settings).ensure()
    search_dir = storage.run_dir(base.run_name)
    search_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(_trial, base=base.model_dump(mode="json"), settings=settings),
            {"CPU": TRIAL_DRIVER_CPUS},
        ),
        param_space={key: tune.grid_search(list(values)) for key, values in space.items()},
        tune_config=tune.TuneConfig(metric="eval_loss", mode="min", max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(name="tune", storage_path=str(search_dir), verbose=0),
    )
    grid = tuner.fit()
    rows = []
    for result in grid:
        values = {key: result.config.get(key) for key in space}
        frame = result.metrics_dataframe
        best_eval = float(frame["eval_loss"].min()) if frame is not None and "eval_loss" in frame else None
        rows.append(
            {
                "run_name": trial_name(base.run_name, values),
                **values,
                "steps": (result.metrics or {}).get("step"),
                "final_eval_loss": (result.metrics or {}).get("eval_loss"),
                "best_eval_loss": best_eval,
                "error": str(result.error)[:500] if result.error else None,
            }
        )
    finished = [r for r in rows if r["best_eval_loss"] is not None]
    best = min(finished, key=lambda r: r["best_eval_loss"]) if finished else None
    summary = {
        "search": base.run_name,
        "space": space,
        "trials": rows,
        "best": best,
        "seconds": round(time.time() - started, 1),
    }
    atomic_write_json(search_dir / SEARCH_RECORD, summary)
    return summary


def _grid(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    combinations: list[dict[str, Any]] = [{}]
    for key, values in space.items():
        combinations = [{**c, key: v} for c in combinations for v in values]
    return combinations
