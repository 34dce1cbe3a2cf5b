"""The dataset build in stages: plan, analyse (Ray Data), merge, normalise, filter, export, report.

::

    inputs ─ingest─▶ sources ─plan_sources─▶ to analyse ─▶ data_prep.dataflow (Ray Data actor pools)
    earlier + new records ─merge_records─▶ normalise_clips ─▶ filter_clips
                          ─▶ export: validate the kept clips, then write wavs/, metadata.csv, splits, manifest.json

During a build, ``wavs/`` may also hold clips that the filters then reject; they are removed
before ``metadata.csv`` is written.

Sources whose ``.completed`` marker matches the file and the analysis options are not analysed
again; the filters and the export always run over every source of the dataset. Ray is started (or
joined) only when there is something to analyse or write (:mod:`data_prep.runtime`). Nothing here
reads the settings: the caller passes the cache directory and the cluster address.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep import export, ingest
from data_prep.config import AUTO_LANGUAGE, BuildConfig
from data_prep.dataflow import Analysed, analyse_sources
from data_prep.filters import apply_filters, count_reasons
from data_prep.normalize import normalize_text, supported
from data_prep.records import PROCESSED, SKIPPED, UNREADABLE, BuildReport, ClipRecord, SourceRecord
from data_prep.runtime import Placement, RaySession, place_transcribers
from data_prep.transcribe import ResolvedModel, resolve_model

# Receives the build's state as it moves on: ``stage`` (analysis, filter, export), ``sources_total``,
# ``sources_done``, ``clips`` (analysed so far) and, from the export on, ``clips_kept``.
ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass
class SourcePlan:
    """Which sources a build analyses, and what earlier runs left.

    Attributes:
        sources: every identified source of this run's inputs.
        todo: the sources to analyse now.
        completed: sources finished by earlier runs, by id.
        skipped: sources of this run's inputs left as an earlier run analysed them.
        earlier_clips: clips of the completed sources that are not analysed again.
        notes: remarks for the report.
    """

    sources: list[ingest.SourceFile]
    todo: list[ingest.SourceFile]
    completed: dict[str, export.CompletedSource]
    skipped: int
    earlier_clips: int
    notes: list[str] = field(default_factory=list)


def plan_sources(
    sources: Sequence[ingest.SourceFile],
    completed: Mapping[str, export.CompletedSource],
    analysis_key: str,
    redo: bool = False,
) -> SourcePlan:
    """Decide which sources to analyse: new or changed files, other analysis options, or all with ``redo``.

    Args:
        sources: the identified sources of this run's inputs.
        completed: the sources earlier runs finished (their ``.completed`` markers), by id.
        analysis_key: :meth:`BuildConfig.analysis_key` of this run.
        redo: analyse every given source again.

    Returns:
        The plan.
    """

    def finished(source: ingest.SourceFile) -> bool:
        earlier = completed.get(source.source_id)
        return earlier is not None and earlier.record.sha256 == source.sha256 and earlier.analysis_key == analysis_key

    todo = [s for s in sources if redo or not finished(s)]
    todo_ids = {s.source_id for s in todo}
    plan = SourcePlan(
        sources=list(sources),
        todo=todo,
        completed=dict(completed),
        skipped=len(sources) - len(todo),
        earlier_clips=sum(len(done.clips) for sid, done in completed.items() if sid not in todo_ids),
    )
    stale = sorted(sid for sid, done in completed.items() if done.analysis_key != analysis_key and sid not in todo_ids)
    if stale:
        plan.notes.append(f"sources analysed with other segmentation/transcription options kept as they are: {stale}")
    return plan


def merge_records(
    completed: Mapping[str, export.CompletedSource], new: Analysed
) -> tuple[dict[str, SourceRecord], list[ClipRecord]]:
    """Every source of the dataset (earlier ones marked skipped, failed new ones left out) and their clips."""
    records: dict[str, SourceRecord] = {}
    clips: list[ClipRecord] = []
    for sid, earlier in completed.items():
        if sid in new:
            continue
        record = SourceRecord.from_dict(earlier.record.to_dict())
        record.reason = "analysed by an earlier run" + (f" ({record.reason})" if record.reason else "")
        record.status = SKIPPED
        records[sid] = record
        clips.extend(earlier.clips)
    for sid, (record, source_clips) in new.items():
        if record.status == UNREADABLE:
            continue
        records[sid] = record
        clips.extend(source_clips)
    return records, clips


def dataset_language(config: BuildConfig, clips: Sequence[ClipRecord]) -> str:
    """The configured language, or with ``auto`` the most common detection (ties: alphabetical; none: ``en``)."""
    if config.transcribe.language != AUTO_LANGUAGE:
        return config.transcribe.language
    counts = Counter(clip.language for clip in clips if clip.language)
    return min(counts, key=lambda lang: (-counts[lang], lang)) if counts else "en"


def normalise_clips(clips: Sequence[ClipRecord], language: str, model: ResolvedModel) -> list[str]:
    """Fill each clip's ``normalized_text``; returns notes for the report."""
    notes = []
    if not supported(language):
        notes.append(f"no text normalisation rules for language {language!r}: normalized_text only tidies spaces")
    if not model.multilingual:
        notes.append(f"model {model.requested} is English-only: no language detection, so no language filter")
    for clip in clips:
        clip.normalized_text = normalize_text(clip.text, language)
    return notes


def filter_clips(clips: Sequence[ClipRecord], config: BuildConfig, language: str) -> list[str]:
    """Mark each clip's rejection reasons (see :mod:`data_prep.filters`); returns notes for the report."""
    return apply_filters(clips, config.segment, config.filters, language)


@dataclass
class Exported:
    """What the export wrote: the kept clips, the split sizes and notes for the report."""

    kept: list[ClipRecord]
    train: int
    eval: int
    notes: list[str]


def export_dataset(
    out: Path,
    clips: Sequence[ClipRecord],
    records: dict[str, SourceRecord],
    config: BuildConfig,
    ray: RaySession,
) -> Exported:
    """Validate the kept clips, then write ``wavs/``, ``metadata.csv``, the splits and ``clips.json``.

    Kept clips whose recording is gone are rejected (``source_missing``) before the metadata is written.
    """
    kept = [clip for clip in clips if clip.kept]
    export.validate_clips(kept)
    previous = _previous_sample_rate(out)
    if kept:
        ray.connect()  # cutting missing WAVs runs as Ray tasks
    failures = export.sync_wavs(
        out,
        kept,
        records,
        config.export.sample_rate_hz,
        config.resources.export_num_cpus,
        rewrite=previous is not None and previous != config.export.sample_rate_hz,
    )
    notes = []
    for clip in clips:
        if clip.id in failures:
            clip.reasons.append("source_missing")
    kept = [clip for clip in clips if clip.kept]
    if failures:
        notes.append(f"{len(failures)} kept clip(s) could not be written: {sorted(set(failures.values()))[:3]}")
    train, evaluation = export.write_metadata(out, kept, config.export.eval_fraction)
    export.write_clip_report(out, clips)
    return Exported(kept, train, evaluation, notes)


def build_dataset(
    inputs: Sequence[str],
    output_dir: str | os.PathLike[str],
    config: BuildConfig | None = None,
    *,
    cache_dir: str | os.PathLike[str],
    ray_address: str | None = None,
    progress: bool = True,
    redo: bool = False,
    on_progress: ProgressCallback | None = None,
) -> BuildReport:
    """Build (or extend) an LJSpeech-style dataset from recordings of one speaker.

    Args:
        inputs: directories, files, globs or URLs (URLs need yt-dlp).
        output_dir: the dataset directory; created if missing, extended if it holds a dataset.
        config: options (defaults when None); validated here.
        cache_dir: where derived models are cached (the CLI passes ``<storage_root>/cache``).
        ray_address: cluster to join when Ray is not running and ``RAY_ADDRESS`` is unset.
        progress: show a progress bar.
        redo: analyse every given source again, even those with a matching ``.completed`` marker.
        on_progress: called with the build's state at each stage and after each analysed source
            (see :data:`ProgressCallback`).

    Returns:
        The report, also written as ``manifest.json``.

    Raises:
        InvalidInputError: invalid options, or a URL input without yt-dlp installed.
        ConfigError: unknown model, or actor pools larger than the cluster.
    """
    started = time.perf_counter()
    config = (config or BuildConfig()).validate()
    out = Path(output_dir).expanduser().absolute()
    model = resolve_model(config.transcribe.model, Path(cache_dir) / "whisper")
    out.mkdir(parents=True, exist_ok=True)
    plan, rejected = _ingest(inputs, out, config, redo)
    timings = {"ingest": time.perf_counter() - started}

    def notify(stage: str, **state: Any) -> None:
        if on_progress is not None:
            on_progress({"stage": stage, "sources_total": len(plan.sources), **state})

    placement: Placement | None = None
    new: Analysed = {}
    with RaySession(config.resources, ray_address) as ray:
        if plan.todo:
            notify("analysis", sources_done=plan.skipped, clips=plan.earlier_clips)
            ray.connect()
            placement = place_transcribers(config)
            phase = time.perf_counter()
            new, busy = analyse_sources(
                plan.todo,
                model,
                config,
                out,
                placement,
                progress,
                lambda done, found: notify(
                    "analysis", sources_done=plan.skipped + done, clips=plan.earlier_clips + found
                ),
            )
            timings["analysis"] = time.perf_counter() - phase
            timings.update(busy)
        records, clips = merge_records(plan.completed, new)
        notify("filter", sources_done=len(plan.sources), clips=len(clips))
        phase = time.perf_counter()
        language = dataset_language(config, clips)
        notes = plan.notes + normalise_clips(clips, language, model) + filter_clips(clips, config, language)
        timings["filter"] = time.perf_counter() - phase
        phase = time.perf_counter()
        notify("export", sources_done=len(plan.sources), clips=len(clips), clips_kept=sum(c.kept for c in clips))
        exported = export_dataset(out, clips, records, config, ray)
        timings["export"] = time.perf_counter() - phase
    timings["total"] = time.perf_counter() - started
    report = _report(out, config, model, placement, language, records, rejected, new, clips, exported)
    report.notes, report.timings_s = notes + exported.notes, timings
    export.write_manifest(out, report.to_dict())
    return report


def _ingest(inputs: Sequence[str], out: Path, config: BuildConfig, redo: bool) -> tuple[SourcePlan, list[SourceRecord]]:
    """Find, fetch and identify the inputs and plan their analysis; returns the plan and the unusable inputs."""
    completed = export.load_completed(out)
    files, issues = ingest.expand_inputs(inputs, out / "downloads")
    sources, bad = ingest.identify_sources(files, {sid: done.record for sid, done in completed.items()})
    return plan_sources(sources, completed, config.analysis_key(), redo), [*issues, *bad]


def _report(
    out: Path,
    config: BuildConfig,
    model: ResolvedModel,
    placement: Placement | None,
    language: str,
    records: dict[str, SourceRecord],
    rejected: list[SourceRecord],
    new: Analysed,
    clips: Sequence[ClipRecord],
    exported: Exported,
) -> BuildReport:
    """The build's report (timings and notes are filled in by the caller)."""
    per_source = Counter(clip.source_id for clip in clips)
    per_source_kept = Counter(clip.source_id for clip in exported.kept)
    for sid, record in records.items():
        record.clips, record.kept = per_source[sid], per_source_kept[sid]
    failed = [record for record, _ in new.values() if record.status == UNREADABLE]
    return BuildReport(
        output_dir=str(out),
        language=language,
        model=model.to_dict(),
        sources=sorted([*records.values(), *rejected, *failed], key=lambda r: (r.source_id, r.path)),
        clips=len(clips),
        kept=len(exported.kept),
        train=exported.train,
        eval=exported.eval,
        total_duration_s=sum(r.duration_s for r in records.values()),
        processed_duration_s=sum(r.duration_s for r, _ in new.values() if r.status == PROCESSED),
        kept_duration_s=sum(clip.duration_s for clip in exported.kept),
        rejected_by_reason=count_reasons(clips),
        config=config.to_dict(),
        placement=placement.to_dict() if placement else {},
    )


def _previous_sample_rate(output_dir: Path) -> int | None:
    try:
        manifest = json.loads((output_dir / export.MANIFEST).read_text(encoding="utf-8"))
        return int(manifest["config"]["export"]["sample_rate_hz"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
