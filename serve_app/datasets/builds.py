"""Starting and following dataset builds: a :class:`serve_app.runs.ManagedRun` (a Ray Job, else an actor).

The command is ``python -m data_prep build --config build_config.json --input ... --output ...``; an
actor-run build writes its output to ``build.log`` and its outcome into ``build.json`` when it ends.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from data_prep.config import write_config_file
from serve_app import runs
from serve_app.datasets.service import (
    BUILDING,
    CONFIG,
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
)
from serve_app.submissions import python_argv
from voice_core.settings import Settings
from voice_core.status import Status
from voice_core.storage import read_json


def _read_progress(directory: Path) -> dict[str, Any] | None:
    return read_json(directory / PROGRESS)


# The one lifecycle of runs, with the words datasets have always shown (a build that stopped failed).
BUILDS = runs.ManagedRun(
    noun="build",
    namespace="avs-datasets",
    record_file=RECORD,
    log_file=LOG,
    words={
        Status.QUEUED: BUILDING,
        Status.RUNNING: BUILDING,
        Status.SUCCEEDED: READY,
        Status.FAILED: Status.FAILED.value,
        Status.STOPPED: Status.FAILED.value,
    },
    read_progress=_read_progress,
    vanished="the build actor ended without recording an outcome (killed, or its node died); POST the dataset "
    "again to resume it (finished recordings are kept)",
)


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
    record["job_id"] = f"dataset-{name}-{secrets.token_hex(4)}"
    argv = python_argv(*cli_args(config_file, store.recordings_dir(source), output))
    failure = BUILDS.submit(output, record, argv, settings, {"avs_dataset": name})
    if failure is not None:
        raise failure
    return record


def refresh(store: DatasetStore, record: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Bring a building record up to date with its runner (terminal outcomes are saved)."""
    return BUILDS.refresh(store.dataset_dir(record["name"]), record, settings)


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
        "error": (record or {}).get("error") or ((progress or {}).get("error") if status == Status.FAILED else None),
    }
    if not detail:
        return view
    keys = ("options", "source", "runner_reason", "job_status", "exit_status", "submitted_at", "finished_at")
    view.update({key: (record or {}).get(key) for key in keys})
    view["previous_builds"] = (record or {}).get("previous_builds", [])
    view["progress"] = progress
    view["manifest"] = manifest_summary(manifest) if manifest else None
    view["clips_url"] = f"/datasets/{name}/clips"
    view["logs_tail"] = BUILDS.logs_tail(store.dataset_dir(name), record, settings)
    return view
