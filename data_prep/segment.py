"""Cutting recordings into clips: Silero VAD regions grouped into clips, cut points in silences.

The work happens in three steps, the first two here and pure:

1. :func:`detect_speech` runs the Silero VAD shipped with faster-whisper on 16 kHz audio.
2. :func:`plan_clips` groups speech regions into clips inside the duration window, ending a clip
   at a long pause (or before it would grow too long), and gives each clip an audio *window* that
   reaches into the silence around it (up to the middle of the pause to its neighbour).
3. After transcription, :func:`refine_bounds` places the final cuts: never inside a word the
   transcriber found, ``pad_ms`` away from the speech, snapped to the quietest nearby frame.

:class:`SegmentStage` is the Ray Data stage that decodes each source and runs steps 1-2.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from data_prep.batch import batch_rows, require_columns, row_values, rows_to_batch
from data_prep.config import ANALYSIS_SAMPLE_RATE_HZ, SegmentOptions

FRAME_S = 0.01
# A window edge at least this far from the speech lies in a pause; nearer, the cut may split a word.
PAUSE_S = 0.05
# A word ending this close to an edge that is not a pause is taken as cut by it.
EDGE_TOLERANCE_S = 0.06
# Frames this far above the window's quiet floor count as sound (a word the VAD missed).
ACTIVE_ABOVE_FLOOR_DB = 12.0
# Frames within this much of the quietest candidate are equally good cut points.
SNAP_TOLERANCE_DB = 3.0


@dataclass(frozen=True)
class PlannedClip:
    """A clip as planned from the VAD, before its transcript is known.

    Attributes:
        index: position in the source.
        speech_start_s: start of its first speech region.
        speech_end_s: end of its last speech region.
        window_start_s: earliest possible cut (in the pause before it, or the source start).
        window_end_s: latest possible cut.
        left_pause: the window starts in a pause (so a cut there cannot split a word).
        right_pause: the window ends in a pause.
        regions: its VAD speech regions ``(start_s, end_s)``.
    """

    index: int
    speech_start_s: float
    speech_end_s: float
    window_start_s: float
    window_end_s: float
    left_pause: bool
    right_pause: bool
    regions: tuple[tuple[float, float], ...]


def vad_options(options: SegmentOptions) -> Any:
    """The faster-whisper ``VadOptions`` for these segment options."""
    from faster_whisper.vad import VadOptions

    return VadOptions(
        threshold=options.vad_threshold,
        min_speech_duration_ms=options.min_speech_ms,
        # Silero splits longer regions at its last pause (or hard), so every region fits a clip.
        max_speech_duration_s=options.max_clip_s - 2 * options.pad_ms / 1000,
        min_silence_duration_ms=options.min_silence_ms,
        speech_pad_ms=0,
    )


def detect_speech(audio: np.ndarray, options: SegmentOptions) -> list[tuple[float, float]]:
    """Find speech regions with Silero VAD.

    Args:
        audio: mono float32 at 16 kHz.
        options: segmentation options.

    Returns:
        ``(start_s, end_s)`` regions in order.
    """
    from faster_whisper.vad import get_speech_timestamps

    if audio.size == 0:
        return []
    stamps = get_speech_timestamps(audio, vad_options(options), sampling_rate=ANALYSIS_SAMPLE_RATE_HZ)
    rate = float(ANALYSIS_SAMPLE_RATE_HZ)
    return [(round(s["start"] / rate, 4), round(s["end"] / rate, 4)) for s in stamps]


def plan_clips(regions: Sequence[tuple[float, float]], duration_s: float, options: SegmentOptions) -> list[PlannedClip]:
    """Group speech regions into clips and give each its audio window.

    A clip ends before a region that would make it longer than ``max_clip_s`` (pads included),
    at a pause longer than ``max_inner_silence_ms``, or at a pause of ``split_silence_ms`` once it
    is ``min_clip_s`` long. A clip's window reaches ``context_ms`` into the surrounding silence but
    never past the middle of the pause to the next clip.

    Args:
        regions: VAD regions in order, in seconds.
        duration_s: length of the recording.
        options: segmentation options.

    Returns:
        The planned clips, indexed from 0.
    """
    pad = options.pad_ms / 1000
    groups: list[list[tuple[float, float]]] = []
    for region in regions:
        if groups:
            current = groups[-1]
            gap_ms = (region[0] - current[-1][1]) * 1000
            length = current[-1][1] - current[0][0] + 2 * pad
            grown = region[1] - current[0][0] + 2 * pad
            ends = (
                grown > options.max_clip_s
                or gap_ms > options.max_inner_silence_ms
                or (gap_ms >= options.split_silence_ms and length >= options.min_clip_s)
            )
            if not ends:
                current.append(region)
                continue
        groups.append([region])
    context = options.context_ms / 1000
    clips = []
    for index, group in enumerate(groups):
        start, end = group[0][0], group[-1][1]
        low = 0.0 if index == 0 else (groups[index - 1][-1][1] + start) / 2
        high = duration_s if index == len(groups) - 1 else (end + groups[index + 1][0][0]) / 2
        window_start = max(low, start - context)
        window_end = min(high, end + context)
        clips.append(
            PlannedClip(
                index=index,
                speech_start_s=start,
                speech_end_s=end,
                window_start_s=round(window_start, 4),
                window_end_s=round(window_end, 4),
                left_pause=start - window_start >= PAUSE_S,
                right_pause=window_end - end >= PAUSE_S,
                regions=tuple(group),
            )
        )
    return clips


def frame_energy_db(audio: np.ndarray, sample_rate: int = ANALYSIS_SAMPLE_RATE_HZ) -> np.ndarray:
    """Energy of consecutive 10 ms frames in dB (full scale sine = -3 dB); a short tail is one frame."""
    size = round(FRAME_S * sample_rate)
    count = max(1, int(np.ceil(audio.size / size)))
    padded = np.zeros(count * size, dtype=np.float64)
    padded[: audio.size] = audio
    power = np.mean(padded.reshape(count, size) ** 2, axis=1)
    return 10 * np.log10(power + 1e-10)


def _snap(energy_db: np.ndarray, window_start_s: float, target_s: float, low_s: float, high_s: float) -> float:
    """The frame boundary in ``[low_s, high_s]`` nearest ``target_s`` among the quietest frames there."""
    first = int(np.ceil((low_s - window_start_s) / FRAME_S - 1e-6))
    last = int(np.floor((high_s - window_start_s) / FRAME_S + 1e-6))
    first, last = max(first, 0), min(last, energy_db.size)
    if last <= first:
        return round(min(max(target_s, low_s), high_s), 4)
    # A boundary at frame i sits between frames i-1 and i; judge it by the louder of the two.
    bounds = np.arange(first, last + 1)
    left = energy_db[np.clip(bounds - 1, 0, energy_db.size - 1)]
    right = energy_db[np.clip(bounds, 0, energy_db.size - 1)]
    loudness = np.maximum(left, right)
    quiet = bounds[loudness <= loudness.min() + SNAP_TOLERANCE_DB]
    times = window_start_s + quiet * FRAME_S
    return round(float(times[np.argmin(np.abs(times - target_s))]), 4)


def refine_bounds(
    clip: PlannedClip,
    words: Sequence[tuple[float, float]],
    energy_db: np.ndarray,
    options: SegmentOptions,
) -> tuple[float, float, bool]:
    """Place a clip's final cuts from its VAD speech, its words and the frame energy of its window.

    The speech span is the VAD's, widened to a transcribed word that sticks out of it where there
    is sound. Each cut goes ``pad_ms`` outside the span, moved to the nearest of the quietest
    frames between the span and the window edge, so it never falls inside a word.

    Args:
        clip: the planned clip.
        words: ``(start_s, end_s)`` of its words in source time, in order.
        energy_db: :func:`frame_energy_db` of its window audio.
        options: segmentation options.

    Returns:
        ``(start_s, end_s, cut_in_word)``; ``cut_in_word`` is set when a word touches a window edge
        that is not a pause (a split the VAD forced inside continuous speech).
    """
    ws, we = clip.window_start_s, clip.window_end_s
    start, end = clip.speech_start_s, clip.speech_end_s
    floor = float(np.percentile(energy_db, 10)) if energy_db.size else -100.0
    active = np.flatnonzero(energy_db > floor + ACTIVE_ABOVE_FLOOR_DB)
    active_times = ws + active * FRAME_S
    if words:
        first, last = max(words[0][0], ws), min(words[-1][1], we)
        early = active_times[(active_times >= first) & (active_times < start)]
        if early.size:
            start = float(early[0])
        late = active_times[(active_times > end) & (active_times <= last)]
        if late.size:
            end = float(min(late[-1] + FRAME_S, we))
    pad = options.pad_ms / 1000
    cut_start = _snap(energy_db, ws, start - pad, ws, start)
    cut_end = _snap(energy_db, ws, end + pad, end, we)
    cut_in_word = bool(words) and (
        (not clip.left_pause and words[0][0] - ws < EDGE_TOLERANCE_S)
        or (not clip.right_pause and we - words[-1][1] < EDGE_TOLERANCE_S)
    )
    return cut_start, cut_end, cut_in_word


def regions_json(regions: Sequence[tuple[float, float]]) -> str:
    """Serialise regions for a batch column."""
    return json.dumps([[round(a, 4), round(b, 4)] for a, b in regions])


class SegmentStage:
    """Ray Data stage: decode each source to 16 kHz mono, find speech, plan clips.

    Input columns: ``source_id``, ``path``. Output: one row per planned clip with its window audio,
    or one row with ``status`` ``error``/``no_speech`` and the reason when a source gives none.

    Args:
        options: segmentation options.
        output_rate_hz: when set, each source is also decoded at this rate (the dataset's) and
            every clip row carries its window at that rate in ``audio_out``, so the analysis can
            write the clip's WAV without decoding the recording again.
    """

    name: ClassVar[str] = "segment"
    required_columns: ClassVar[tuple[str, ...]] = ("source_id", "path")

    def __init__(self, options: SegmentOptions, output_rate_hz: int | None = None) -> None:
        from faster_whisper.vad import get_vad_model

        self.options = options
        self.output_rate_hz = output_rate_hz
        get_vad_model()  # cached per process: loaded once per actor

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Segment every source of the batch."""
        require_columns(batch, self.name, self.required_columns)
        rows: list[dict[str, Any]] = []
        for row in batch_rows(batch):
            rows.extend(self.segment_source(str(row["source_id"]), str(row["path"])))
        return rows_to_batch(rows)

    def segment_source(self, source_id: str, path: str) -> list[dict[str, Any]]:
        """Decode one file and plan its clips; failures become one row with the reason."""
        from voice_core.decode import decode_audio
        from voice_core.errors import VoiceError

        started = time.perf_counter()
        try:
            audio = decode_audio(path, ANALYSIS_SAMPLE_RATE_HZ)
        except VoiceError as exc:
            return [_source_row(source_id, path, "error", str(exc), 0.0, time.perf_counter() - started, 0.0)]
        decoded = time.perf_counter()
        duration_s = audio.size / ANALYSIS_SAMPLE_RATE_HZ
        clips = plan_clips(detect_speech(audio, self.options), duration_s, self.options)
        vad_s = time.perf_counter() - decoded
        if not clips:
            reason = "the voice activity detector found no speech"
            return [_source_row(source_id, path, "no_speech", reason, duration_s, decoded - started, vad_s)]
        decode_s = decoded - started
        full = np.zeros(0, dtype=np.float32)
        if self.output_rate_hz:
            mark = time.perf_counter()
            try:
                full = decode_audio(path, self.output_rate_hz)
            except VoiceError:
                pass  # decoded once already; should it fail now, the export cuts the clips itself
            decode_s += time.perf_counter() - mark
        rows = []
        for clip in clips:
            first = round(clip.window_start_s * ANALYSIS_SAMPLE_RATE_HZ)
            last = round(clip.window_end_s * ANALYSIS_SAMPLE_RATE_HZ)
            row = _source_row(source_id, path, "ok", "", duration_s, 0.0, 0.0)
            row.update(
                index=clip.index,
                clips_in_source=len(clips),
                window_start_s=clip.window_start_s,
                window_end_s=clip.window_end_s,
                speech_start_s=clip.speech_start_s,
                speech_end_s=clip.speech_end_s,
                left_pause=clip.left_pause,
                right_pause=clip.right_pause,
                regions=regions_json(clip.regions),
                audio=np.ascontiguousarray(audio[first:last], dtype=np.float32),
            )
            if full.size:
                rate = self.output_rate_hz or 0
                window = full[round(clip.window_start_s * rate) : round(clip.window_end_s * rate)]
                row["audio_out"] = np.ascontiguousarray(window, dtype=np.float32)
            rows.append(row)
        # Source-level timings go on the first clip only, so summing a column gives the stage's time.
        rows[0].update(time_decode_s=decode_s, time_vad_s=vad_s)
        return rows


def _source_row(
    source_id: str, path: str, status: str, reason: str, duration_s: float, decode_s: float, vad_s: float
) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "path": path,
        "status": status,
        "reason": reason,
        "source_duration_s": round(duration_s, 4),
        "index": -1,
        "clips_in_source": 0,
        "window_start_s": 0.0,
        "window_end_s": 0.0,
        "speech_start_s": 0.0,
        "speech_end_s": 0.0,
        "left_pause": True,
        "right_pause": True,
        "regions": "[]",
        "audio": np.zeros(0, dtype=np.float32),
        "audio_out": np.zeros(0, dtype=np.float32),
        "time_decode_s": decode_s,
        "time_vad_s": vad_s,
    }


# Columns of a segment row that make a PlannedClip (besides its regions).
_PLANNED_COLUMNS: dict[str, type] = {"index": int, "left_pause": bool, "right_pause": bool}
_PLANNED_COLUMNS |= dict.fromkeys(("speech_start_s", "speech_end_s", "window_start_s", "window_end_s"), float)


def planned_from_row(row: dict[str, Any]) -> PlannedClip:
    """Rebuild the :class:`PlannedClip` a segment row describes."""
    values = row_values(row, _PLANNED_COLUMNS)
    return PlannedClip(regions=tuple((float(a), float(b)) for a, b in json.loads(row["regions"])), **values)
