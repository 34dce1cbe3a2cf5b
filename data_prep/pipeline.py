"""The dataset build: ingest, the Ray Data analysis pipeline, filters and export.

::

    inputs ─ingest─▶ sources ─▶ [SegmentStage]  decode 16 kHz (+ 22.05 kHz), Silero VAD, plan clips (actor pool)
                               ─▶ [TranscribeStage] faster-whisper, word-safe cuts   (actor pool of N decoding workers,
                                                                                      GPU if any)
                               ─▶ [AnalyzeStage]  SNR, clipping, speech ratio, speaker; write the clip's WAV
                                                                                     (actor pool)
                               ─▶ driver: per-source records + .completed markers
           all sources' records ─▶ normalise text ─▶ filters ─▶ remove rejected WAVs (cut missing ones: Ray tasks)
                               ─▶ metadata.csv, train/eval splits, manifest.json

During a build, ``wavs/`` may also hold clips that the filters then reject; they are removed
before ``metadata.csv`` is written.

Sources whose ``.completed`` marker matches the file and the analysis options are not analysed
again; the filters and the export always run over every source of the dataset.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import export, ingest
from data_prep.config import AUTO_LANGUAGE, BuildConfig, ResourceOptions
from data_prep.filters import apply_filters, count_reasons
from data_prep.normalize import normalize_text, supported
from data_prep.records import FAILED, NO_SPEECH, PROCESSED, SKIPPED, BuildReport, ClipRecord, SourceRecord, clip_id
from data_prep.transcribe import ResolvedModel, resolve_model
from voice_core.errors import ConfigError

log = logging.getLogger("data_prep")

STAGE_TIMES = ("time_decode_s", "time_vad_s", "time_transcribe_s", "time_analyze_s", "time_write_s")

# Receives the build's state as it moves on: ``stage`` (analysis, filter, export), ``sources_total``,
# ``sources_done``, ``clips`` (analysed so far) and, from the export on, ``clips_kept``.
ProgressCallback = Callable[[dict[str, Any]], None]


def ensure_ray(resources: ResourceOptions, ray_address: str | None = None) -> bool:
    """Connect to Ray: reuse a running session, join a cluster, or start a local one.

    ``RAY_ADDRESS`` (set by ``ray job submit``) means ``ray.init(address="auto")``; otherwise
    ``ray_address`` (``AVS_RAY_ADDRESS``) is joined when given; otherwise a local Ray starts with an
    explicit CPU count.

    Args:
        resources: resource options (``local_num_cpus``).
        ray_address: cluster address from the settings.

    Returns:
        Whether this call started or joined Ray (and so should shut it down).
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto", log_to_driver=False)
    elif ray_address:
        ray.init(address=ray_address, log_to_driver=False)
    else:
        num_cpus = resources.local_num_cpus or os.cpu_count() or 1
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


# A transcriber never reserves less than this, even on a full cluster (it then waits for CPUs).
MIN_TRANSCRIBE_CPUS = 0.25


@dataclass(frozen=True)
class Placement:
    """Where and how the transcribers run, resolved against the cluster.

    Attributes:
        device: ``cpu`` or ``cuda``.
        compute_type: CTranslate2 compute type.
        num_gpus: GPUs per transcriber actor.
        num_cpus: CPUs reserved by each transcriber actor.
        workers: decoding workers per actor (clips transcribed at once).
        cpu_threads: CTranslate2 threads per worker.
    """

    device: str
    compute_type: str
    num_gpus: float
    num_cpus: float
    workers: int
    cpu_threads: int

    def to_dict(self) -> dict[str, Any]:
        """Manifest form (``placement`` in ``manifest.json``)."""
        return dataclasses.asdict(self)


def _largest_node_cpus() -> float:
    import ray

    cpus = [float(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]
    return max(cpus, default=0.0)


def _placement(config: BuildConfig) -> Placement:
    """Decide devices and reservations, and check that the actor pools fit the cluster (they would wait forever)."""
    import ray

    res, tr = config.resources, config.transcribe
    cluster = ray.cluster_resources()
    total_cpus, total_gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    free = float(ray.available_resources().get("CPU", 0))
    num_gpus = res.transcribe_num_gpus
    if num_gpus is None:
        num_gpus = 1.0 if total_gpus >= 1 and tr.device != "cpu" else 0.0
    device = tr.device if tr.device != "auto" else ("cuda" if num_gpus > 0 else "cpu")
    if device == "cuda" and (num_gpus <= 0 or total_gpus <= 0):
        raise ConfigError("transcribe.device='cuda' but the Ray cluster has no GPU (or transcribe_num_gpus is 0)")
    compute_type = tr.compute_type if tr.compute_type != "auto" else ("float16" if device == "cuda" else "int8")
    num_cpus = res.transcribe_num_cpus
    if num_cpus is None:
        # Share what the light pools leave of the free CPUs; one actor lives on one node.
        share = (free - res.light_cpus()) / res.transcribe_pool_size
        largest = _largest_node_cpus()
        if largest > 0:
            share = min(share, largest)
        if device == "cuda":
            share = min(share, 1.0)
        num_cpus = max(MIN_TRANSCRIBE_CPUS, round(share, 4))
    need = res.actor_cpus(num_cpus)
    if need > total_cpus + 1e-9:
        raise ConfigError(
            f"the data-prep actor pools need {need:g} CPUs (segment {res.segment_pool_size}x{res.segment_num_cpus:g}, "
            f"transcribe {res.transcribe_pool_size}x{num_cpus:g}, analyze "
            f"{res.analyze_pool_size}x{res.analyze_num_cpus:g}) but the Ray cluster has {total_cpus:g}; lower the "
            "*_num_cpus options (fractions are fine) or the pool sizes, or Ray Data would wait forever"
        )
    if need > free + 1e-9:
        log.warning("the actor pools need %g CPUs but %g are free now: the build waits until they are", need, free)
    if device == "cuda":
        workers, cpu_threads = 1, max(1, int(num_cpus))
    else:
        workers, cpu_threads = res.transcribe_workers(num_cpus), res.transcribe_cpu_threads
    return Placement(device, compute_type, num_gpus, num_cpus, workers, cpu_threads)


def _analysis_rows(
    sources: Sequence[ingest.SourceFile],
    model: ResolvedModel,
    config: BuildConfig,
    placement: Placement,
    wav_dir: Path,
) -> Iterator[dict[str, Any]]:
    """Run the Ray Data pipeline over ``sources`` and yield its output rows as they arrive."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    from data_prep.analyze import AnalyzeStage
    from data_prep.segment import SegmentStage
    from data_prep.transcribe import TranscribeStage

    res = config.resources
    context = DataContext.get_current()
    saved = context.enable_progress_bars
    context.enable_progress_bars = False  # the build shows its own bar
    # A source's clips leave the segment stage as one block, which one transcriber actor takes as a
    # whole. Smaller blocks (one clip each, through DataContext.target_max_block_size) would spread
    # a long recording over several actors, but cost ~20% of the wall time here in per-task
    # overhead; and repartition(target_num_rows_per_block=...) runs as tasks of 1 CPU that cannot
    # be placed while the actor pools hold a small cluster's CPUs (the build hangs).
    try:
        items = [{"source_id": s.source_id, "path": str(s.path)} for s in sources]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(
            SegmentStage,
            fn_constructor_kwargs={"options": config.segment, "output_rate_hz": config.export.sample_rate_hz},
            batch_size=1,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=res.segment_pool_size),
            num_cpus=res.segment_num_cpus,
        )
        ds = ds.map_batches(
            TranscribeStage,
            fn_constructor_kwargs={
                "model_path": str(model.path),
                "options": config.transcribe,
                "segment": config.segment,
                "device": placement.device,
                "compute_type": placement.compute_type,
                "cpu_threads": placement.cpu_threads,
                "num_workers": placement.workers,
            },
            batch_size=max(res.transcribe_batch_size, placement.workers),
            batch_format="numpy",
            compute=ActorPoolStrategy(size=res.transcribe_pool_size),
            num_cpus=placement.num_cpus,
            num_gpus=placement.num_gpus or None,
        )
        ds = ds.map_batches(
            AnalyzeStage,
            fn_constructor_kwargs={
                "embed_speaker": config.filters.min_speaker_similarity is not None,
                "wav_dir": str(wav_dir),
                "sample_rate": config.export.sample_rate_hz,
            },
            batch_size=res.transcribe_batch_size,
            batch_format="numpy",
            compute=ActorPoolStrategy(size=res.analyze_pool_size),
            num_cpus=res.analyze_num_cpus,
        )
        yield from ds.iter_rows()
    finally:
        context.enable_progress_bars = saved


def _clip_from_row(row: dict[str, Any]) -> ClipRecord:
    embedding = np.asarray(row["embedding"], dtype=np.float64)
    return ClipRecord(
        id=clip_id(str(row["source_id"]), int(row["index"])),
        source_id=str(row["source_id"]),
        index=int(row["index"]),
        start_s=round(float(row["start_s"]), 4),
        end_s=round(float(row["end_s"]), 4),
        text=str(row["text"]),
        language=str(row["language"]),
        language_prob=float(row["language_prob"]),
        avg_logprob=float(row["avg_logprob"]),
        no_speech_prob=float(row["no_speech_prob"]),
        snr_db=float(row["snr_db"]),
        clipping_ratio=float(row["clipping_ratio"]),
        speech_ratio=float(row["speech_ratio"]),
        peak=float(row["peak"]),
        cut_in_word=bool(row["cut_in_word"]),
        words=json.loads(str(row["words"])),
        embedding=[round(float(v), 6) for v in embedding] if np.any(embedding) else [],
    )


def _analyse(
    sources: Sequence[ingest.SourceFile],
    model: ResolvedModel,
    config: BuildConfig,
    output_dir: Path,
    progress: bool,
    placement: Placement,
    on_source: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, tuple[SourceRecord, list[ClipRecord]]], dict[str, float]]:
    """Analyse sources, saving each one (records, then marker) as soon as its last clip arrives.

    ``on_source(sources_done, clips)`` is called after each source is saved.
    """
    from tqdm import tqdm

    key = config.analysis_key()
    by_id = {s.source_id: s for s in sources}
    pending: dict[str, list[ClipRecord]] = {}
    shown: dict[str, float] = {}
    done: dict[str, tuple[SourceRecord, list[ClipRecord]]] = {}
    busy = dict.fromkeys(STAGE_TIMES, 0.0)
    total = sum(s.duration_s for s in sources)
    started, first = time.perf_counter(), None
    shape = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}{postfix}]"
    with tqdm(total=total, desc="analysing", bar_format=shape, disable=not progress) as bar:
        wav_dir = output_dir / export.WAVS_DIR
        wav_dir.mkdir(parents=True, exist_ok=True)
        for row in _analysis_rows(sources, model, config, placement, wav_dir):
            if first is None:
                first = time.perf_counter() - started
            for name in STAGE_TIMES:
                busy[name] += float(row.get(name, 0.0))
            source = by_id[str(row["source_id"])]
            record = SourceRecord(
                source_id=source.source_id,
                path=str(source.path),
                sha256=source.sha256,
                duration_s=round(float(row["source_duration_s"]) or source.duration_s, 3),
                origin=source.origin,
            )
            status = str(row["status"])
            if status == "ok":
                clips = pending.setdefault(source.source_id, [])
                clips.append(_clip_from_row(row))
                step = float(row["window_end_s"]) - float(row["window_start_s"])
                shown[source.source_id] = shown.get(source.source_id, 0.0) + step
                bar.update(min(step, bar.total - bar.n))
                if len(clips) < int(row["clips_in_source"]):
                    continue
                clips.sort(key=lambda clip: clip.index)
                record.clips = len(clips)
            else:
                clips = []
                record.status = FAILED if status == "error" else NO_SPEECH
                record.reason = str(row["reason"])
            if record.status != FAILED:
                export.save_source(output_dir, record, clips, key)
            done[source.source_id] = (record, clips)
            if on_source is not None:
                on_source(len(done), sum(len(source_clips) for _, source_clips in done.values()))
            bar.update(min(max(0.0, source.duration_s - shown.get(source.source_id, 0.0)), bar.total - bar.n))
            bar.set_postfix(sources=f"{len(done)}/{len(sources)}")
    timings = {name.removeprefix("time_").removesuffix("_s") + "_busy": value for name, value in busy.items()}
    # Until the first analysed clip: actor start-up and model loads, then one clip through every stage.
    timings["analysis_first_clip"] = first or 0.0
    return done, timings


def _dataset_language(config: BuildConfig, clips: Sequence[ClipRecord]) -> str:
    if config.transcribe.language != AUTO_LANGUAGE:
        return config.transcribe.language
    counts = Counter(clip.language for clip in clips if clip.language)
    return min(counts, key=lambda lang: (-counts[lang], lang)) if counts else "en"


def build_dataset(
    inputs: Sequence[str],
    output_dir: str | os.PathLike[str],
    config: BuildConfig | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
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
        cache_dir: where derived models are cached (``<storage_root>/cache`` from the settings by
            default).
        ray_address: cluster to join when Ray is not running and ``RAY_ADDRESS`` is unset.
        progress: show a progress bar.
        redo: analyse every given source again, even those with a matching ``.completed`` marker.
        on_progress: called with the build's state at each stage and after each analysed source
            (see :data:`ProgressCallback`).

    Returns:
        The report, also written as ``manifest.json``.

    Raises:
        ConfigError: invalid options, unknown model, or actor pools larger than the cluster.
        InvalidInputError: a URL input without yt-dlp installed.
    """
    started = time.perf_counter()
    config = (config or BuildConfig()).validate()
    out = Path(output_dir).expanduser().absolute()
    if cache_dir is None:
        from voice_core.settings import Settings

        cache_dir = Settings.load().storage_root / "cache"
    model = resolve_model(config.transcribe.model, Path(cache_dir) / "whisper")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    notes: list[str] = []

    completed = export.load_completed(out)
    files, issues = ingest.expand_inputs(inputs, out / "downloads")
    sources, bad = ingest.identify_sources(files, {sid: done.record for sid, done in completed.items()})
    key = config.analysis_key()
    todo = [
        s
        for s in sources
        if redo
        or s.source_id not in completed
        or completed[s.source_id].record.sha256 != s.sha256
        or completed[s.source_id].analysis_key != key
    ]
    stale = sorted(sid for sid, done in completed.items() if done.analysis_key != key)
    stale = [sid for sid in stale if sid not in {s.source_id for s in todo}]
    if stale:
        notes.append(f"sources analysed with other segmentation/transcription options kept as they are: {stale}")
    timings["ingest"] = time.perf_counter() - started

    def notify(stage: str, **state: Any) -> None:
        if on_progress is not None:
            on_progress({"stage": stage, "sources_total": len(sources), **state})

    todo_ids = {s.source_id for s in todo}
    skipped = len(sources) - len(todo)
    earlier_clips = sum(len(done.clips) for sid, done in completed.items() if sid not in todo_ids)
    started_ray = False
    placement: Placement | None = None
    new: dict[str, tuple[SourceRecord, list[ClipRecord]]] = {}
    try:
        if todo:
            notify("analysis", sources_done=skipped, clips=earlier_clips)
            started_ray = ensure_ray(config.resources, ray_address)
            placement = _placement(config)
            phase = time.perf_counter()
            new, busy = _analyse(
                todo,
                model,
                config,
                out,
                progress,
                placement,
                lambda done, found: notify("analysis", sources_done=skipped + done, clips=earlier_clips + found),
            )
            timings["analysis"] = time.perf_counter() - phase
            timings.update(busy)
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
            if record.status == FAILED:
                continue
            records[sid] = record
            clips.extend(source_clips)

        notify("filter", sources_done=len(sources), clips=len(clips))
        phase = time.perf_counter()
        language = _dataset_language(config, clips)
        if not supported(language):
            notes.append(f"no text normalisation rules for language {language!r}: normalized_text only tidies spaces")
        if not model.multilingual:
            notes.append(f"model {model.requested} is English-only: no language detection, so no language filter")
        for clip in clips:
            clip.normalized_text = normalize_text(clip.text, language)
        notes += apply_filters(clips, config.segment, config.filters, language)
        timings["filter"] = time.perf_counter() - phase

        phase = time.perf_counter()
        kept = [clip for clip in clips if clip.kept]
        notify("export", sources_done=len(sources), clips=len(clips), clips_kept=len(kept))
        previous = _previous_sample_rate(out)
        if kept and not started_ray:
            started_ray = ensure_ray(config.resources, ray_address)
        failures = export.sync_wavs(
            out,
            kept,
            records,
            config.export.sample_rate_hz,
            config.resources.export_num_cpus,
            rewrite=previous is not None and previous != config.export.sample_rate_hz,
        )
        for clip in clips:
            if clip.id in failures:
                clip.reasons.append("source_missing")
        kept = [clip for clip in clips if clip.kept]
        if failures:
            notes.append(f"{len(failures)} kept clip(s) could not be written: {sorted(set(failures.values()))[:3]}")
        train, evaluation = export.write_metadata(out, kept, config.export.eval_fraction)
        export.write_clip_report(out, clips)
        timings["export"] = time.perf_counter() - phase
    finally:
        if started_ray:
            import ray

            ray.shutdown()

    per_source = Counter(clip.source_id for clip in clips)
    per_source_kept = Counter(clip.source_id for clip in kept)
    for sid, record in records.items():
        record.clips, record.kept = per_source[sid], per_source_kept[sid]
    failed = [record for record, _ in new.values() if record.status == FAILED]
    timings["total"] = time.perf_counter() - started
    report = BuildReport(
        output_dir=str(out),
        language=language,
        model=model.to_dict(),
        sources=sorted([*records.values(), *issues, *bad, *failed], key=lambda r: (r.source_id, r.path)),
        clips=len(clips),
        kept=len(kept),
        train=train,
        eval=evaluation,
        total_duration_s=sum(r.duration_s for r in records.values()),
        processed_duration_s=sum(r.duration_s for r, _ in new.values() if r.status == PROCESSED),
        kept_duration_s=sum(clip.duration_s for clip in kept),
        rejected_by_reason=count_reasons(clips),
        timings_s=timings,
        config=config.to_dict(),
        placement=placement.to_dict() if placement else {},
        notes=notes,
    )
    export.write_manifest(out, report.to_dict())
    return report


def _previous_sample_rate(output_dir: Path) -> int | None:
    try:
        manifest = json.loads((output_dir / export.MANIFEST).read_text(encoding="utf-8"))
        return int(manifest["config"]["export"]["sample_rate_hz"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
