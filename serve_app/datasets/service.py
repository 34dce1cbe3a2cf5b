"""Datasets built over HTTP: build options, records, status, summaries, clips and uploaded recordings.

Layout under the storage root::

    recordings/<name>/          recordings uploaded with ``POST /datasets`` (or placed there by an operator)
    datasets/<name>/            the data_prep output (``wavs/``, ``metadata.csv``, ``manifest.json``, ...)
        build.json              the API's record of the latest build: options, runner, job id, outcome
        build_config.json       the data_prep options of the latest build (``python -m data_prep build --config``)
        build.log               output of builds that ran as a Ray actor (Ray Jobs keep their own logs)
        progress.json           written by the data_prep CLI as the build goes

A dataset's status is ``building``, ``ready`` or ``failed``. Datasets built with the CLI alone (no
``build.json``) are listed too, with the status their manifest and progress file imply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from data_prep.config import BuildConfig, InvalidOptionError, SegmentOptions
from voice_core.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from voice_core.status import Status
from voice_core.storage import Storage, atomic_write_json, atomic_writer, is_within, read_json, validate_component

# A dataset's words for a build in progress and a finished one (failed: Status.FAILED).
BUILDING, READY = "building", "ready"
RECORD, LOG, PROGRESS, MANIFEST, CLIPS = "build.json", "build.log", "progress.json", "manifest.json", "clips.json"
RECORDINGS = "recordings"
COPY_CHUNK_BYTES = 1 << 20
CONFIG = "build_config.json"
# data_prep options -> the request fields they come from.
_OPTION_FIELDS = {
    "segment.min_clip_s": "min_clip_s",
    "segment.max_clip_s": "max_clip_s",
    "transcribe.model": "whisper_model",
    "transcribe.language": "language",
}


@dataclass(frozen=True)
class BuildOptions:
    """What a dataset is built with; a later build under the same name must use the same options.

    Attributes:
        language: ``en``, ``pt`` or ``auto``.
        whisper_model: ``tiny.en``, ``base`` or a local CTranslate2 directory (from the settings).
        min_clip_s: shortest clip kept, seconds.
        max_clip_s: longest clip, seconds.
    """

    language: str
    whisper_model: str
    min_clip_s: float = SegmentOptions.min_clip_s
    max_clip_s: float = SegmentOptions.max_clip_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)

    def differences(self, other: dict[str, Any]) -> list[str]:
        """Fields whose value differs from ``other`` (a stored :meth:`to_dict`), as ``field: old -> new``."""
        mine = self.to_dict()
        return [f"{key}: {other.get(key)!r} -> {value!r}" for key, value in mine.items() if other.get(key) != value]


def cli_args(config_file: Path, input_dir: Path, output_dir: Path) -> list[str]:
    """Arguments of ``python -m data_prep`` for one build (without the interpreter).

    The options travel as the JSON file written from :func:`check_options`' config, never as
    command-line text.
    """
    return [
        *("-m", "data_prep", "build", "--config", str(config_file)),
        *("--input", str(input_dir), "--output", str(output_dir), "--no-progress"),
    ]


def check_options(options: BuildOptions, build_cpus: float) -> BuildConfig:
    """The validated data_prep configuration of a build, checked before anything is written or started.

    The Ray Data stages get fractions of ``build_cpus`` so a build fits next to the service's replicas.

    Raises:
        InvalidInputError: an option is out of range or does not fit the others; names the request field.
    """
    quarter = build_cpus / 4
    values = {
        "transcribe": {"language": options.language, "model": options.whisper_model},
        "segment": {"min_clip_s": options.min_clip_s, "max_clip_s": options.max_clip_s},
        "resources": {
            "segment_num_cpus": quarter,
            "transcribe_num_cpus": 2 * quarter,
            "analyze_num_cpus": quarter,
            "export_num_cpus": quarter,
        },
    }
    try:
        return BuildConfig.from_options(values)
    except InvalidOptionError as exc:
        raise InvalidInputError(f"field '{_OPTION_FIELDS.get(exc.field, 'options')}': {exc}") from None


def manifest_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of ``manifest.json``: counts, durations, filter reasons, sources (no paths)."""
    keys = (
        "clips",
        "kept",
        "train",
        "eval",
        "language",
        "total_duration_s",
        "processed_duration_s",
        "kept_duration_s",
        "rejected_by_reason",
        "source_counts",
        "notes",
        "timings_s",
    )
    summary = {key: manifest.get(key) for key in keys}
    summary["model"] = (manifest.get("model") or {}).get("requested")
    summary["sources"] = [
        {key: source.get(key) for key in ("source_id", "status", "reason", "duration_s", "clips", "kept")}
        for source in manifest.get("sources", [])
    ]
    return summary


def options_from_manifest(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The :class:`BuildOptions` fields a CLI-built dataset used, from its manifest's config."""
    try:
        config = manifest["config"]
        return {
            "language": config["transcribe"]["language"],
            "whisper_model": config["transcribe"]["model"],
            "min_clip_s": config["segment"]["min_clip_s"],
            "max_clip_s": config["segment"]["max_clip_s"],
        }
    except (KeyError, TypeError):
        return None


class DatasetStore:
    """Datasets and uploaded recordings under one storage root."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @property
    def recordings(self) -> Path:
        """Directory of uploaded recordings, one folder per dataset (or per named source)."""
        return self.storage.root / RECORDINGS

    def dataset_dir(self, name: str) -> Path:
        """Directory of dataset ``name``.

        Raises:
            InvalidInputError: ``name`` is not a safe path component (the message names the field).
        """
        try:
            return self.storage.dataset_dir(name)
        except InvalidInputError as exc:
            raise InvalidInputError(f"field 'name': {exc}") from None

    def existing_dir(self, name: str) -> Path:
        """Directory of a dataset that exists.

        Raises:
            NotFoundError: there is no such dataset.
        """
        directory = self.dataset_dir(name)
        if not directory.is_dir():
            raise NotFoundError(f"no dataset {name!r}; list datasets with GET /datasets")
        return directory

    def recordings_dir(self, name: str, field: str = "source") -> Path:
        """Folder ``recordings/<name>`` (validated; symlinks may only point into allowed roots)."""
        try:
            path = self.recordings / validate_component(name, "recordings directory")
        except InvalidInputError as exc:
            raise InvalidInputError(f"field '{field}': {exc}") from None
        if not is_within(path, self.storage.allowed_roots()):  # checked before it exists too
            raise InvalidInputError(f"field '{field}': recordings directory {name!r} points outside the storage root")
        return path

    def names(self) -> list[str]:
        """Names of the dataset directories, sorted."""
        if not self.storage.datasets.is_dir():
            return []
        names = []
        for path in sorted(self.storage.datasets.iterdir()):
            try:
                validate_component(path.name)
            except InvalidInputError:
                continue  # not made by this service or the CLI (which validate names); not addressable
            if path.is_dir():
                names.append(path.name)
        return names

    def load_record(self, name: str) -> dict[str, Any] | None:
        """The build record of ``name`` (None for datasets never built through the API)."""
        return read_json(self.dataset_dir(name) / RECORD)

    def save_record(self, record: dict[str, Any]) -> None:
        """Rewrite a build record atomically."""
        atomic_write_json(self.dataset_dir(record["name"]) / RECORD, record)

    def manifest(self, name: str) -> dict[str, Any] | None:
        """The dataset's ``manifest.json`` (None before the first build finished)."""
        return read_json(self.dataset_dir(name) / MANIFEST)

    def progress(self, name: str) -> dict[str, Any] | None:
        """The CLI's ``progress.json`` of the latest build (None until the build has started)."""
        return read_json(self.dataset_dir(name) / PROGRESS)

    def stored_options(self, name: str, record: dict[str, Any] | None) -> dict[str, Any] | None:
        """The options the dataset was built with (from its record, else from its manifest)."""
        if record is not None:
            return record.get("options")
        manifest = self.manifest(name)
        return options_from_manifest(manifest) if manifest else None

    def save_uploads(self, name: str, uploads: list[tuple[str, IO[bytes]]], max_bytes: int) -> list[str]:
        """Store uploaded recordings in ``recordings/<name>/`` (atomically; nothing is overwritten).

        A file whose name is taken by other bytes is stored as ``<stem>-<sha256 prefix><suffix>``;
        one identical to a stored file is not stored again.

        Args:
            name: the dataset name.
            uploads: ``(client file name, readable binary file)`` pairs.
            max_bytes: largest accepted file.

        Returns:
            The stored file names, in upload order.

        Raises:
            PayloadTooLargeError: a file is larger than ``max_bytes`` (files stored before it are kept).
        """
        folder = self.recordings_dir(name, "name")
        folder.mkdir(parents=True, exist_ok=True)
        stored = []
        for index, (filename, handle) in enumerate(uploads):
            target = folder / safe_filename(filename, index)
            digest = hashlib.sha256()
            staged = folder / f".upload-{secrets.token_hex(6)}"
            with atomic_writer(staged, "wb") as out:
                size = 0
                while chunk := handle.read(COPY_CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLargeError(
                            f"field 'files': {filename!r} is larger than {max_bytes} bytes (AVS_MAX_DATASET_FILE_BYTES)"
                        )
                    digest.update(chunk)
                    out.write(chunk)
            if target.exists():
                if _sha256(target) == digest.hexdigest():
                    staged.unlink()
                    stored.append(target.name)
                    continue
                target = target.with_name(f"{target.stem}-{digest.hexdigest()[:8]}{target.suffix}")
            staged.replace(target)
            stored.append(target.name)
        return stored

    def clips(self, name: str, limit: int, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """Kept clips of a dataset, by id: ``(total kept, the page)``; each with its audio URL."""
        directory = self.existing_dir(name)
        try:
            rows = json.loads((directory / CLIPS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            rows = []
        kept = [row for row in rows if isinstance(row, dict) and row.get("kept")]
        page = []
        for row in kept[offset : offset + limit]:
            item = {key: row.get(key) for key in ("id", "source_id", "text", "normalized_text", "duration_s")}
            item["audio_url"] = f"/datasets/{name}/clips/{row['id']}/audio"
            page.append(item)
        return len(kept), page

    def clip_path(self, name: str, clip_id: str) -> Path:
        """The WAV of a kept clip, symlinks resolved (see :meth:`Storage.stored_file`).

        Raises:
            InvalidInputError: ``clip_id`` is not a safe id.
            NotFoundError: no such dataset or clip, or the clip resolves outside the allowed roots.
        """
        try:
            validate_component(clip_id, "clip id")
        except InvalidInputError as exc:
            raise InvalidInputError(f"field 'clip_id': {exc}") from None
        path = self.existing_dir(name) / "wavs" / f"{clip_id}.wav"
        missing = f"dataset {name!r} has no clip {clip_id!r}; list them with GET /datasets/{name}/clips"
        return self.storage.stored_file(path, missing)


def safe_filename(filename: str, index: int) -> str:
    """A stored name for an uploaded file: its base name made safe (letters, digits, ``._-``), suffix kept."""
    from data_prep.ingest import sanitize_stem

    base = Path(filename.replace("\\", "/")).name if filename else ""
    path = Path(base)
    suffix = "".join(c for c in path.suffix.lower() if c.isalnum() or c == ".")[:10]
    stem = sanitize_stem(path.stem) if path.stem else f"upload-{index}"
    return f"{stem}{suffix}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(COPY_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def new_record(name: str, options: BuildOptions, source: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The record of a build about to start (``runner`` and ``job_id`` are filled in by the submitter)."""
    history = list((previous or {}).get("previous_builds", []))
    if previous and previous.get("job_id"):
        history.append({key: previous.get(key) for key in ("job_id", "runner", "status", "source", "submitted_at")})
    return {
        "name": name,
        "options": options.to_dict(),
        "source": source,
        "status": BUILDING,
        "job_id": None,
        "runner": None,
        "runner_reason": None,
        "job_status": "PENDING",
        "error": None,
        "exit_status": None,
        "submitted_at": round(time.time(), 3),
        "finished_at": None,
        "previous_builds": history[-20:],
    }


def status_without_record(manifest: dict[str, Any] | None, progress: dict[str, Any] | None) -> str:
    """Status of a dataset built outside the API, from what its files say."""
    if progress is not None and progress.get("stage") not in ("done", "failed"):
        return BUILDING
    if manifest is not None:
        return READY if manifest.get("kept") else Status.FAILED
    return Status.FAILED if progress is not None else BUILDING
