"""Per-clip measurements (SNR, clipping, speech ratio, level) and the stage that adds them.

SNR is estimated from the clip's audio window: the mean power of the frames inside VAD speech
regions against the median power of the frames well outside them (the window reaches into the
surrounding pauses; frames next to speech hold its decay and are left out). When a window has too
little non-speech, the quietest tenth of its frames stands for the noise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from data_prep.batch import batch_rows, require_columns, rows_to_batch
from data_prep.config import ANALYSIS_SAMPLE_RATE_HZ
from data_prep.export import sample_span
from data_prep.records import clip_id
from data_prep.segment import FRAME_S
from data_prep.speaker import EMBEDDING_DIM

CLIPPING_LEVEL = 0.99
MAX_SNR_DB = 100.0
_MIN_NOISE_FRAMES = 10
# Frames this close to speech hold its onset or decay, not noise.
_NOISE_GUARD_S = 0.05


def _frame_power(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    size = round(FRAME_S * sample_rate)
    count = audio.size // size
    if count == 0:
        return np.zeros(0)
    return np.mean(audio[: count * size].astype(np.float64).reshape(count, size) ** 2, axis=1)


def speech_mask(count: int, start_s: float, regions: Sequence[Sequence[float]], margin_s: float = 0.0) -> np.ndarray:
    """Which of ``count`` 10 ms frames starting at ``start_s`` lie inside a speech region (widened by ``margin_s``)."""
    times = start_s + (np.arange(count) + 0.5) * FRAME_S
    mask = np.zeros(count, dtype=bool)
    for begin, end in regions:
        mask |= (times >= begin - margin_s) & (times < end + margin_s)
    return mask


def estimate_snr_db(
    audio: np.ndarray, start_s: float, regions: Sequence[Sequence[float]], sample_rate: int = ANALYSIS_SAMPLE_RATE_HZ
) -> float:
    """Estimate the signal-to-noise ratio of speech in a window.

    Args:
        audio: the window, mono.
        start_s: time of its first sample in the recording.
        regions: speech regions in recording time.
        sample_rate: rate of ``audio``.

    Returns:
        SNR in dB, between -``MAX_SNR_DB`` and ``MAX_SNR_DB`` (digital silence gives the maximum).
    """
    power = _frame_power(audio, sample_rate)
    if power.size == 0:
        return 0.0
    speech = speech_mask(power.size, start_s, regions)
    if speech.sum() == 0:
        return 0.0
    noise_frames = power[~speech_mask(power.size, start_s, regions, _NOISE_GUARD_S)]
    if noise_frames.size < _MIN_NOISE_FRAMES:
        noise_frames = np.sort(power)[: max(1, power.size // 10)]
    noise = float(np.median(noise_frames))
    signal = max(float(power[speech].mean()) - noise, 0.0)
    if signal <= 0:
        return -MAX_SNR_DB if noise > 0 else 0.0
    if noise <= 0:
        return MAX_SNR_DB
    return float(np.clip(10 * np.log10(signal / noise), -MAX_SNR_DB, MAX_SNR_DB))


def clipping_ratio(audio: np.ndarray, level: float = CLIPPING_LEVEL) -> float:
    """Fraction of samples at or above ``level`` in magnitude."""
    return float(np.mean(np.abs(audio) >= level)) if audio.size else 0.0


def speech_ratio(start_s: float, end_s: float, regions: Sequence[Sequence[float]]) -> float:
    """Fraction of ``[start_s, end_s]`` covered by speech regions."""
    length = end_s - start_s
    if length <= 0:
        return 0.0
    covered = sum(max(0.0, min(end, end_s) - max(begin, start_s)) for begin, end in regions)
    return min(1.0, covered / length)


class AnalyzeStage:
    """Ray Data stage: measure each clip, embed its speaker and write its WAV; drops the audio columns.

    The WAV of every analysed clip is written while the transcribers are still busy, from the
    window at the dataset's rate that the segment stage decoded (``audio_out``); the export then
    only removes the clips that the filters reject.

    Args:
        embed_speaker: compute speaker embeddings (off when the speaker filter is off).
        device: where the speaker encoder runs.
        wav_dir: where to write the clips' WAVs (``None``: the export cuts them).
        sample_rate: rate of ``audio_out`` and of the written WAVs.
    """

    name: ClassVar[str] = "analyze"
    required_columns: ClassVar[tuple[str, ...]] = ("status", "audio", "window_start_s", "start_s", "end_s", "regions")

    def __init__(
        self, embed_speaker: bool = True, device: str = "cpu", wav_dir: str | None = None, sample_rate: int = 0
    ) -> None:
        from data_prep.speaker import SpeakerEncoder

        self.encoder = SpeakerEncoder(device) if embed_speaker else None
        self.wav_dir = Path(wav_dir) if wav_dir else None
        self.sample_rate = sample_rate

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Measure the batch's clips (and write their WAVs)."""
        require_columns(batch, self.name, self.required_columns)
        rows = []
        for row in batch_rows(batch):
            started = time.perf_counter()
            audio = row.pop("audio")
            out = np.asarray(row.pop("audio_out", np.zeros(0)), dtype=np.float32)
            row.update(self.measure(row, np.asarray(audio, dtype=np.float32)) if row["status"] == "ok" else _empty())
            row["time_analyze_s"] = time.perf_counter() - started
            started = time.perf_counter()
            if row["status"] == "ok" and out.size and self.wav_dir is not None:
                self.write_clip(self.wav_dir, row, out)
            row["time_write_s"] = time.perf_counter() - started
            rows.append(row)
        return rows_to_batch(rows)

    def write_clip(self, wav_dir: Path, row: dict[str, Any], window: np.ndarray) -> None:
        """Write a clip's WAV from its window at the output rate (the samples ``export.cut_source`` would cut)."""
        from voice_core.encode import write_wav

        offset = round(float(row["window_start_s"]) * self.sample_rate)
        first, last = sample_span(float(row["start_s"]), float(row["end_s"]), self.sample_rate)
        name = clip_id(str(row["source_id"]), int(row["index"]))
        write_wav(wav_dir / f"{name}.wav", window[max(0, first - offset) : max(0, last - offset)], self.sample_rate)

    def measure(self, row: dict[str, Any], window: np.ndarray) -> dict[str, Any]:
        """Measurements and embedding of one clip, given its window audio."""
        regions = json.loads(row["regions"])
        offset = float(row["window_start_s"])
        start, end = float(row["start_s"]), float(row["end_s"])
        first = max(0, round((start - offset) * ANALYSIS_SAMPLE_RATE_HZ))
        last = max(first, round((end - offset) * ANALYSIS_SAMPLE_RATE_HZ))
        clip = window[first:last]
        embedding = np.zeros(EMBEDDING_DIM, dtype=np.float32)
        if self.encoder is not None and clip.size:
            embedding = self.encoder.embed(clip)
        return {
            "snr_db": round(estimate_snr_db(window, offset, regions), 3),
            "clipping_ratio": round(clipping_ratio(clip), 6),
            "speech_ratio": round(speech_ratio(start, end, regions), 4),
            "peak": round(float(np.max(np.abs(clip))) if clip.size else 0.0, 4),
            "embedding": embedding,
        }


def _empty() -> dict[str, Any]:
    return {
        "snr_db": 0.0,
        "clipping_ratio": 0.0,
        "speech_ratio": 0.0,
        "peak": 0.0,
        "embedding": np.zeros(EMBEDDING_DIM, dtype=np.float32),
    }
