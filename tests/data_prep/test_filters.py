"""Quality measurements and filter decisions, on synthetic signals and records."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.analyze import clipping_ratio, estimate_snr_db, speech_ratio
from data_prep.config import FilterOptions, SegmentOptions
from data_prep.filters import REASONS, apply_filters, clip_reasons, count_reasons, text_key
from data_prep.records import ClipRecord
from data_prep.speaker import main_speaker, unit

SEGMENT = SegmentOptions()
FILTERS = FilterOptions()
RATE = 16000


def _signal(noise_db: float) -> tuple[np.ndarray, list[list[float]]]:
    rng = np.random.default_rng(0)
    audio = 10 ** (noise_db / 20) * rng.standard_normal(3 * RATE)
    t = np.arange(RATE, 2 * RATE)
    audio[t] += 0.1 * np.sqrt(2) * np.sin(2 * np.pi * 200 * t / RATE)  # -20 dBFS tone in [1 s, 2 s)
    return audio.astype(np.float32), [[1.0, 2.0]]


@pytest.mark.parametrize("noise_db", [-60.0, -40.0, -25.0])
def test_snr_estimate_tracks_the_noise_level(noise_db: float) -> None:
    audio, regions = _signal(noise_db)
    assert estimate_snr_db(audio, 0.0, regions) == pytest.approx(-20 - noise_db, abs=1.5)


def test_snr_of_noise_alone_is_low() -> None:
    audio = 0.1 * np.random.default_rng(1).standard_normal(3 * RATE).astype(np.float32)
    assert estimate_snr_db(audio, 0.0, [[1.0, 2.0]]) < 3


def test_snr_with_digital_silence_is_the_maximum() -> None:
    audio, regions = _signal(-200)
    audio[:RATE] = 0
    audio[2 * RATE :] = 0
    assert estimate_snr_db(audio, 0.0, regions) == 100.0


def test_clipping_and_speech_ratio() -> None:
    audio = np.zeros(1000, dtype=np.float32)
    audio[:10] = 1.0
    assert clipping_ratio(audio) == pytest.approx(0.01)
    assert speech_ratio(0.0, 4.0, [[0.5, 1.5], [2.0, 3.0], [3.5, 9.0]]) == pytest.approx(2.5 / 4)


def _clip(index: int, **fields: object) -> ClipRecord:
    defaults = dict(
        id=f"rec-{index:05d}",
        source_id="rec",
        index=index,
        start_s=0.0,
        end_s=3.0,
        text=f"sentence number {index}",
        normalized_text=f"sentence number {index}",
        avg_logprob=-0.3,
        no_speech_prob=0.1,
        snr_db=40.0,
        speech_ratio=0.8,
    )
    defaults.update(fields)
    return ClipRecord(**defaults)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"text": "", "normalized_text": ""}, "empty_text"),
        ({"end_s": 0.5}, "too_short"),
        ({"end_s": 12.0}, "too_long"),
        ({"no_speech_prob": 0.9}, "no_speech"),
        ({"avg_logprob": -1.5}, "low_confidence"),
        ({"snr_db": 8.0}, "low_snr"),
        ({"clipping_ratio": 0.01}, "clipping"),
        ({"speech_ratio": 0.2}, "low_speech_ratio"),
        ({"language": "pt", "language_prob": 0.9}, "language_mismatch"),
        ({"cut_in_word": True}, "cut_in_word"),
    ],
)
def test_each_clip_filter_has_its_reason(fields: dict, reason: str) -> None:
    assert clip_reasons(_clip(0), SEGMENT, FILTERS, "en") == []
    assert clip_reasons(_clip(0, **fields), SEGMENT, FILTERS, "en") == [reason]


def test_filters_switch_off_with_none() -> None:
    off = FilterOptions(min_snr_db=None, min_avg_logprob=None, min_language_prob=None)
    clip = _clip(0, snr_db=0.0, avg_logprob=-5.0, language="pt", language_prob=1.0)
    assert clip_reasons(clip, SEGMENT, off, "en") == []


def test_unsure_language_detection_does_not_reject() -> None:
    assert clip_reasons(_clip(0, language="es", language_prob=0.3), SEGMENT, FILTERS, "en") == []


def _voice(seed: int, center: np.ndarray, spread: float) -> list[float]:
    noise = np.random.default_rng(seed).standard_normal(center.size)
    return [float(v) for v in unit(center + spread * noise)]


def test_dataset_filters_reject_other_speakers_and_repeats() -> None:
    rng = np.random.default_rng(42)
    main, other = unit(rng.standard_normal(256)), unit(rng.standard_normal(256))
    clips = [_clip(i, embedding=_voice(i, main, 0.02)) for i in range(6)]
    clips += [_clip(6, embedding=_voice(6, other, 0.02)), _clip(7, embedding=_voice(7, other, 0.02))]
    clips.append(
        _clip(8, text="Sentence number 1!", normalized_text="Sentence number 1!", embedding=_voice(8, main, 0.02))
    )
    clips.append(_clip(9, snr_db=1.0, embedding=_voice(9, other, 0.02)))  # fails alone: not counted as a voice
    notes = apply_filters(list(reversed(clips)), SEGMENT, FILTERS, "en")
    assert notes == []
    decided = {clip.index: clip.reasons for clip in clips}
    assert [i for i, reasons in decided.items() if not reasons] == [0, 1, 2, 3, 4, 5]
    assert decided[6] == decided[7] == ["speaker_mismatch"]
    assert decided[8] == ["duplicate_text"]
    assert decided[9] == ["low_snr"]
    assert clips[0].speaker_similarity > 0.9 and clips[6].speaker_similarity < 0.5
    assert count_reasons(clips) == {"low_snr": 1, "speaker_mismatch": 2, "duplicate_text": 1}
    assert list(count_reasons(clips)) == [r for r in REASONS if r in count_reasons(clips)]


def test_speaker_check_needs_a_few_clips() -> None:
    clips = [_clip(0, embedding=[1.0, 0.0]), _clip(1, embedding=[0.0, 1.0])]
    notes = apply_filters(clips, SEGMENT, FILTERS, "en")
    assert all(clip.kept for clip in clips)
    assert "speaker check skipped" in notes[0]


def test_main_speaker_is_the_majority_voice() -> None:
    rng = np.random.default_rng(5)
    main, other = unit(rng.standard_normal(64)), unit(rng.standard_normal(64))
    vectors = np.array([_voice(i, main, 0.05) for i in range(5)] + [_voice(10 + i, other, 0.05) for i in range(4)])
    centroid = main_speaker(vectors)
    assert float(centroid @ main) > 0.95
    assert float(centroid @ other) < 0.3


def test_text_key_ignores_case_and_punctuation() -> None:
    assert text_key("Hello, World!") == text_key("hello world")
