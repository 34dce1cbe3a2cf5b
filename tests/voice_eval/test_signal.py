"""Signal checks on real espeak-ng speech and damaged copies of it (no models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.voice_eval.conftest import SR, babble
from voice_core.decode import decode_audio
from voice_eval.signal import analyse_signal, expected_speech_s


@pytest.fixture(scope="module")
def speech(espeak_clip: tuple[Path, str]) -> tuple[np.ndarray, str]:
    path, text = espeak_clip
    return decode_audio(path, SR), text


def test_clean_speech_has_no_flags_and_plausible_figures(speech: tuple[np.ndarray, str]) -> None:
    audio, text = speech
    report = analyse_signal(audio, text, "en")
    assert report.flags == []
    assert report.words_per_s_range is not None
    assert report.words_per_s_range[0] < report.words_per_s < report.words_per_s_range[1]
    assert 0.7 < report.duration_ratio < 1.4
    assert 0 <= report.leading_silence_s < 0.2
    assert 0.05 < report.trailing_silence_s < 0.5
    assert report.clipping_ratio == 0.0


def test_half_the_clip_is_truncated(speech: tuple[np.ndarray, str]) -> None:
    audio, text = speech
    assert "truncated" in analyse_signal(audio[: audio.size // 2], text, "en").flags


def test_a_clip_cut_right_after_its_speech_is_not_truncated(speech: tuple[np.ndarray, str]) -> None:
    audio, text = speech
    report = analyse_signal(audio, text, "en")
    end = audio.size - int(report.trailing_silence_s * SR) + int(0.02 * SR)
    assert "truncated" not in analyse_signal(audio[:end], text, "en").flags


def test_babble_after_the_speech_is_runaway(speech: tuple[np.ndarray, str]) -> None:
    audio, text = speech
    padded = np.concatenate([audio, babble(5.0, level=float(np.abs(audio).max()) * 0.7), np.zeros(SR // 4)])
    report = analyse_signal(padded.astype(np.float32), text, "en")
    assert "runaway" in report.flags
    assert report.duration_ratio > 1.8


def test_the_same_speech_for_a_much_longer_text_is_truncated(speech: tuple[np.ndarray, str]) -> None:
    audio, text = speech
    assert "truncated" in analyse_signal(audio, " ".join([text] * 3), "en").flags


def test_silence_and_near_silence_are_silent() -> None:
    assert analyse_signal(np.zeros(2 * SR, dtype=np.float32), "hello there", "en").flags == ["silent"]
    hiss = (1e-4 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    assert analyse_signal(hiss, "hello there", "en").flags == ["silent"]
    assert analyse_signal(np.zeros(0, dtype=np.float32), "hello there", "en").flags == ["silent"]


def test_overdriven_speech_is_clipped(speech: tuple[np.ndarray, str]) -> None:
    audio, text = speech
    loud = np.clip(audio * 6, -1, 1)
    report = analyse_signal(loud, text, "en")
    assert report.flags == ["clipped"]
    assert report.clipping_ratio > 0.01
    # Peaks touching full scale (Piper normalises to 1.0) are not clipping.
    normalised = audio / np.abs(audio).max()
    assert "clipped" not in analyse_signal(normalised, text, "en").flags


def test_expected_duration_follows_text_length() -> None:
    assert expected_speech_s("one two three", "en") == pytest.approx(len("onetwothree") / 15)
    assert expected_speech_s("你好世界", "zh") == pytest.approx(4 / 5)
