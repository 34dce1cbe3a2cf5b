"""The analysis as a Ray Data pipeline: decode + VAD, transcribe, analyse, and the driver's per-source collection.

::

    sources ─▶ [SegmentStage]    decode 16 kHz (+ the export rate), Silero VAD, plan clips (actor pool)
            ─▶ [TranscribeStage] faster-whisper, word-safe cuts (actor pool of N decoding workers, GPU if any)
            ─▶ [AnalyzeStage]    SNR, clipping, speech ratio, speaker; write the clip's WAV (actor pool)
            ─▶ driver: per-source records + .completed markers

Needs a connected Ray (:mod:`data_prep.runtime`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep import export
from data_prep.batch import row_values
from data_prep.config import BuildConfig
from data_prep.ingest import SourceFile
from data_prep.records import NO_SPEECH, UNREADABLE, ClipRecord, SourceRecord, clip_id
from data_prep.runtime import Placement
from data_prep.transcribe import ResolvedModel

STAGE_TIMES = ("time_decode_s", "time_vad_s", "time_transcribe_s", "time_analyze_s", "time_write_s")
Analysed = dict[str, tuple[SourceRecord, list[ClipRecord]]]


def analysis_rows(
    sources: Sequence[SourceFile],
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


# Columns of an analysis row copied into a ClipRecord as they are.
_CLIP_COLUMNS: dict[str, type] = {"source_id": str, "index": int, "text": str, "language": str, "cut_in_word": bool}
_CLIP_COLUMNS |= dict.fromkeys(
    ("language_prob", "avg_logprob", "no_speech_prob", "snr_db", "clipping_ratio", "speech_ratio", "peak"), float
)


def clip_from_row(row: dict[str, Any]) -> ClipRecord:
    """The :class:`ClipRecord` of one output row of the analysis stage."""
    embedding = np.asarray(row["embedding"], dtype=np.float64)
    values = row_values(row, _CLIP_COLUMNS)
    return ClipRecord(
        id=clip_id(values["source_id"], values["index"]),
        start_s=round(float(row["start_s"]), 4),
        end_s=round(float(row["end_s"]), 4),
        words=json.loads(str(row["words"])),
        embedding=[round(float(v), 6) for v in embedding] if np.any(embedding) else [],
        **values,
    )


class _Collector:
    """Gathers the rows of each source; a source is finished when its last clip (or its failure) arrives."""

    def __init__(self, sources: Sequence[SourceFile]) -> None:
        self.by_id = {s.source_id: s for s in sources}
        self.pending: dict[str, list[ClipRecord]] = {}
        self.shown: dict[str, float] = {}  # seconds of each source the progress bar has counted
        self.busy = dict.fromkeys(STAGE_TIMES, 0.0)

    def add(self, row: dict[str, Any]) -> tuple[SourceRecord, list[ClipRecord]] | None:
        """Take one row; return ``(record, clips)`` once its source is complete."""
        for name in STAGE_TIMES:
            self.busy[name] += float(row.get(name, 0.0))
        source = self.by_id[str(row["source_id"])]
        record = SourceRecord(
            source_id=source.source_id,
            path=str(source.path),
            sha256=source.sha256,
            duration_s=round(float(row["source_duration_s"]) or source.duration_s, 3),
            origin=source.origin,
        )
        status = str(row["status"])
        if status != "ok":
            record.status = UNREADABLE if status == "error" else NO_SPEECH
            record.reason = str(row["reason"])
            return record, []
        clips = self.pending.setdefault(source.source_id, [])
        clips.append(clip_from_row(row))
        step = float(row["window_end_s"]) - float(row["window_start_s"])
        self.shown[source.source_id] = self.shown.get(source.source_id, 0.0) + step
        if len(clips) < int(row["clips_in_source"]):
            return None
        clips.sort(key=lambda clip: clip.index)
        record.clips = len(clips)
        return record, clips

    def timings(self, first: float | None) -> dict[str, float]:
        """Busy seconds per stage, and the time until the first analysed clip."""
        timings = {name.removeprefix("time_").removesuffix("_s") + "_busy": value for name, value in self.busy.items()}
        # Until the first analysed clip: actor start-up and model loads, then one clip through every stage.
        timings["analysis_first_clip"] = first or 0.0
        return timings


def analyse_sources(
    sources: Sequence[SourceFile],
    model: ResolvedModel,
    config: BuildConfig,
    output_dir: Path,
    placement: Placement,
    progress: bool = False,
    on_source: Callable[[int, int], None] | None = None,
) -> tuple[Analysed, dict[str, float]]:
    """Analyse sources, saving each one (records, then marker) as soon as its last clip arrives.

    Args:
        sources: the sources to analyse.
        model: the transcription model.
        config: the build's options.
        output_dir: the dataset directory (clips are written to its ``wavs/``).
        placement: where the transcribers run.
        progress: show a progress bar.
        on_source: called with ``(sources done, clips so far)`` after each source is saved.

    Returns:
        ``{source_id: (record, clips)}`` and the stage timings.
    """
    from tqdm import tqdm

    key = config.analysis_key()
    collector = _Collector(sources)
    done: Analysed = {}
    started, first = time.perf_counter(), None
    shape = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}{postfix}]"
    total = sum(s.duration_s for s in sources)
    with tqdm(total=total, desc="analysing", bar_format=shape, disable=not progress) as bar:
        wav_dir = output_dir / export.WAVS_DIR
        wav_dir.mkdir(parents=True, exist_ok=True)
        for row in analysis_rows(sources, model, config, placement, wav_dir):
            if first is None:
                first = time.perf_counter() - started
            if str(row["status"]) == "ok":
                step = float(row["window_end_s"]) - float(row["window_start_s"])
                bar.update(min(step, bar.total - bar.n))
            finished = collector.add(row)
            if finished is None:
                continue
            record, clips = finished
            if record.status != UNREADABLE:
                export.save_source(output_dir, record, clips, key)
            done[record.source_id] = (record, clips)
            if on_source is not None:
                on_source(len(done), sum(len(source_clips) for _, source_clips in done.values()))
            duration = collector.by_id[record.source_id].duration_s
            bar.update(min(max(0.0, duration - collector.shown.get(record.source_id, 0.0)), bar.total - bar.n))
            bar.set_postfix(sources=f"{len(done)}/{len(sources)}")
    return done, collector.timings(first)
