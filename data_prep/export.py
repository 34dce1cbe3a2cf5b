"""The dataset on disk: per-source records and ``.completed`` markers, WAVs, metadata and splits.

Layout of a dataset directory::

    wavs/<id>.wav              kept clips, mono PCM16 at 22.05 kHz
    metadata.csv               id|text|normalized_text, no header (LJSpeech)
    metadata_train.csv         the training split, same format
    metadata_eval.csv          the evaluation split, same format
    manifest.json              sources, options, counts, durations, filter counts, model, timings
    clips.json                 every clip's measurements and decision (kept, reasons), no audio
    sources/<source>.json      the analysis of one source (its clips and their measurements)
    sources/<source>.completed marker written last: the source needs no further analysis

Every file is written atomically, and the metadata files are a pure function of the stored
analyses and the options, so a re-run gives byte-identical metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.records import ClipRecord, SourceRecord
from voice_core.storage import atomic_write_json, atomic_write_text

WAVS_DIR = "wavs"
SOURCES_DIR = "sources"
METADATA = "metadata.csv"
TRAIN_METADATA = "metadata_train.csv"
EVAL_METADATA = "metadata_eval.csv"
MANIFEST = "manifest.json"
CLIP_REPORT = "clips.json"
MARKER_SUFFIX = ".completed"


@dataclass
class CompletedSource:
    """A source analysed by an earlier run.

    Attributes:
        record: its source record.
        clips: its analysed clips.
        analysis_key: :meth:`BuildConfig.analysis_key` of the run that analysed it.
    """

    record: SourceRecord
    clips: list[ClipRecord]
    analysis_key: str


def _round_floats(value: Any, digits: int = 6) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_round_floats(item, digits) for item in value]
    if isinstance(value, dict):
        return {key: _round_floats(item, digits) for key, item in value.items()}
    return value


def save_source(output_dir: Path, record: SourceRecord, clips: Sequence[ClipRecord], analysis_key: str) -> None:
    """Store one source's analysis, then its ``.completed`` marker.

    Args:
        output_dir: the dataset directory.
        record: the source.
        clips: its clips, in index order.
        analysis_key: the options' analysis key (a marker with another key is analysed again).
    """
    folder = output_dir / SOURCES_DIR
    data = {"source": record.to_dict(), "clips": [_round_floats(clip.to_dict()) for clip in clips]}
    atomic_write_json(folder / f"{record.source_id}.json", data)
    marker = {"analysis_key": analysis_key, "sha256": record.sha256, "clips": len(clips)}
    atomic_write_json(folder / f"{record.source_id}{MARKER_SUFFIX}", marker)


def load_completed(output_dir: Path) -> dict[str, CompletedSource]:
    """Read every source with a ``.completed`` marker (unreadable ones are ignored: analysed again).

    Args:
        output_dir: the dataset directory.

    Returns:
        Completed sources by id.
    """
    completed = {}
    folder = output_dir / SOURCES_DIR
    for marker in sorted(folder.glob(f"*{MARKER_SUFFIX}")):
        source_id = marker.name[: -len(MARKER_SUFFIX)]
        try:
            stamp = json.loads(marker.read_text(encoding="utf-8"))
            data = json.loads((folder / f"{source_id}.json").read_text(encoding="utf-8"))
            record = SourceRecord.from_dict(data["source"])
            clips = [ClipRecord.from_dict(item) for item in data["clips"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        completed[source_id] = CompletedSource(record, clips, str(stamp.get("analysis_key", "")))
    return completed


def eval_score(clip_id: str) -> float:
    """A stable number in [0, 1) from an id; clips below ``eval_fraction`` go to the evaluation split."""
    return int(hashlib.sha256(clip_id.encode()).hexdigest()[:8], 16) / 2**32


def split_ids(ids: Sequence[str], eval_fraction: float) -> tuple[list[str], list[str]]:
    """Split clip ids into training and evaluation sets by hash.

    A clip's split depends only on its id, so adding recordings never moves existing clips, except
    that with two or more clips and ``eval_fraction > 0`` the evaluation set is never empty (the
    clip with the lowest score is moved there).

    Args:
        ids: clip ids.
        eval_fraction: wanted share of the evaluation split.

    Returns:
        ``(train, eval)``, each sorted.
    """
    ordered = sorted(ids)
    evaluation = [i for i in ordered if eval_score(i) < eval_fraction]
    if not evaluation and eval_fraction > 0 and len(ordered) >= 2:
        evaluation = [min(ordered, key=eval_score)]
    if len(evaluation) == len(ordered) and ordered:
        evaluation = evaluation[1:]
    chosen = set(evaluation)
    return [i for i in ordered if i not in chosen], evaluation


def _field(text: str) -> str:
    return " ".join(text.replace("|", " ").split())


def metadata_text(clips: Sequence[ClipRecord]) -> str:
    """LJSpeech ``metadata.csv`` content for clips: ``id|text|normalized_text`` lines sorted by id."""
    lines = [f"{c.id}|{_field(c.text)}|{_field(c.normalized_text)}" for c in sorted(clips, key=lambda c: c.id)]
    return "".join(line + "\n" for line in lines)


def validate_clips(kept: Sequence[ClipRecord]) -> None:
    """Check the clips about to be exported, before anything is written.

    Raises:
        ValueError: two clips share an id, an id is not a safe file name or ``metadata.csv`` field, or a
            clip's span is empty; the message names the clip.
    """
    seen: set[str] = set()
    for clip in kept:
        if clip.id in seen:
            raise ValueError(f"clip id {clip.id!r} appears twice; clip ids must be unique within a dataset")
        seen.add(clip.id)
        if not clip.id or any(char in clip.id for char in "/\\|\n") or clip.id.startswith("."):
            raise ValueError(f"clip id {clip.id!r} cannot name a WAV or a metadata.csv row")
        if not clip.end_s > clip.start_s:
            raise ValueError(f"clip {clip.id!r} spans {clip.start_s} to {clip.end_s} s: its end must follow its start")


def write_metadata(output_dir: Path, kept: Sequence[ClipRecord], eval_fraction: float) -> tuple[int, int]:
    """Write ``metadata.csv`` and the two split files.

    Args:
        output_dir: the dataset directory.
        kept: the clips that passed every filter.
        eval_fraction: share of the evaluation split.

    Returns:
        ``(train, eval)`` clip counts.
    """
    by_id = {clip.id: clip for clip in kept}
    train, evaluation = split_ids(list(by_id), eval_fraction)
    atomic_write_text(output_dir / METADATA, metadata_text(kept))
    atomic_write_text(output_dir / TRAIN_METADATA, metadata_text([by_id[i] for i in train]))
    atomic_write_text(output_dir / EVAL_METADATA, metadata_text([by_id[i] for i in evaluation]))
    return len(train), len(evaluation)


def write_manifest(output_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` (sorted keys, indented)."""
    atomic_write_json(output_dir / MANIFEST, manifest)


def write_clip_report(output_dir: Path, clips: Sequence[ClipRecord]) -> None:
    """Write ``clips.json``: each clip's times, transcript, measurements and decision, sorted by id."""
    rows = []
    for clip in sorted(clips, key=lambda c: c.id):
        row = clip.to_dict()
        del row["words"], row["embedding"]
        row["kept"] = clip.kept
        rows.append(_round_floats(row))
    atomic_write_json(output_dir / CLIP_REPORT, rows)


def sample_span(start_s: float, end_s: float, sample_rate: int) -> tuple[int, int]:
    """Sample indices ``[first, last)`` of a clip in its recording (times as stored: 4 decimals).

    The analysis (writing a clip from its window) and :func:`cut_source` (from the whole recording)
    both cut through this, so a WAV has the same bytes whichever wrote it.
    """
    return round(round(start_s, 4) * sample_rate), round(round(end_s, 4) * sample_rate)


def cut_source(path: str, clips: Sequence[tuple[str, float, float]], wav_dir: str, sample_rate: int) -> dict[str, str]:
    """Decode one recording once at ``sample_rate`` and write the given clips as WAVs.

    Runs as a Ray task (one per source that has clips to write).

    Args:
        path: the recording.
        clips: ``(clip_id, start_s, end_s)``.
        wav_dir: the dataset's ``wavs`` directory.
        sample_rate: rate of the written files.

    Returns:
        Clip id -> error message, for clips that could not be written (empty when all were).
    """
    from voice_core.decode import decode_audio
    from voice_core.encode import write_wav
    from voice_core.errors import VoiceError

    try:
        audio = decode_audio(path, sample_rate)
    except VoiceError as exc:
        return {clip_id: f"source could not be decoded again: {exc}" for clip_id, _, _ in clips}
    for clip_id, start_s, end_s in clips:
        first, last = sample_span(start_s, end_s, sample_rate)
        write_wav(Path(wav_dir) / f"{clip_id}.wav", audio[first : min(last, audio.size)], sample_rate)
    return {}


def sync_wavs(
    output_dir: Path,
    kept: Sequence[ClipRecord],
    sources: dict[str, SourceRecord],
    sample_rate: int,
    num_cpus: float,
    rewrite: bool = False,
) -> dict[str, str]:
    """Make ``wavs/`` hold exactly the kept clips: write missing ones, remove the others.

    The analysis already wrote the WAVs of the clips it analysed (see :class:`AnalyzeStage`), so
    usually this only removes rejected clips. Kept clips without a WAV (an earlier source's clip that
    a filter now keeps, a WAV deleted by hand) are cut from their recordings in parallel Ray tasks,
    each decoding its recording once. Existing WAVs are left alone unless ``rewrite`` (the output
    rate changed).

    Args:
        output_dir: the dataset directory.
        kept: the clips that passed every filter.
        sources: source records by id (their paths).
        sample_rate: rate of the WAVs.
        num_cpus: CPUs of each cutting task.
        rewrite: write every kept clip again.

    Returns:
        Clip id -> reason, for kept clips whose WAV could not be written (their recording is gone
        or no longer decodes).
    """
    wav_dir = output_dir / WAVS_DIR
    wav_dir.mkdir(parents=True, exist_ok=True)
    wanted = {clip.id for clip in kept}
    for existing in wav_dir.glob("*.wav"):
        if rewrite or existing.stem not in wanted:
            existing.unlink()
    todo: dict[str, list[tuple[str, float, float]]] = {}
    failures: dict[str, str] = {}
    for clip in sorted(kept, key=lambda c: c.id):
        if (wav_dir / f"{clip.id}.wav").is_file():
            continue
        source = sources.get(clip.source_id)
        if source is None or not Path(source.path).is_file():
            where = source.path if source else "(unknown)"
            failures[clip.id] = f"recording {where} is gone, so the clip cannot be cut"
            continue
        todo.setdefault(clip.source_id, []).append((clip.id, clip.start_s, clip.end_s))
    if todo:
        import ray

        task = ray.remote(num_cpus=num_cpus)(cut_source)
        refs = [task.remote(sources[sid].path, clips, str(wav_dir), sample_rate) for sid, clips in sorted(todo.items())]
        for result in ray.get(refs):
            failures.update(result)
    return failures
