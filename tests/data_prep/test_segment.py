"""Clip planning and cut placement (pure functions), and Silero VAD on a real espeak recording."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_prep.config import SegmentOptions
from data_prep.segment import (
    FRAME_S,
    PlannedClip,
    detect_speech,
    frame_energy_db,
    plan_clips,
    refine_bounds,
)
from tests.data_prep.corpus import speak_recording
from voice_core.decode import decode_audio

OPTIONS = SegmentOptions()


def test_long_pauses_end_clips_and_windows_stop_midway() -> None:
    regions = [(1.0, 2.5), (3.3, 5.0), (5.2, 6.0)]  # 0.8 s pause, then 0.2 s pause
    clips = plan_clips(regions, 7.0, OPTIONS)
    assert [(c.speech_start_s, c.speech_end_s) for c in clips] == [(1.0, 2.5), (3.3, 6.0)]
    first, second = clips
    assert first.window_start_s == pytest.approx(1.0 - OPTIONS.context_ms / 1000)
    assert first.window_end_s == pytest.approx(2.9)  # middle of the 0.8 s pause
    assert second.window_start_s == pytest.approx(2.9)
    assert second.window_end_s == pytest.approx(6.6)
    assert all(c.left_pause and c.right_pause for c in clips)
    assert second.regions == ((3.3, 5.0), (5.2, 6.0))


def test_short_clips_merge_across_split_pauses_until_long_enough() -> None:
    regions = [(0.0, 0.4), (1.0, 1.8), (2.4, 4.0)]  # 0.6 s pauses, first part too short to stand alone
    clips = plan_clips(regions, 4.5, OPTIONS)
    assert [(c.speech_start_s, c.speech_end_s) for c in clips] == [(0.0, 1.8), (2.4, 4.0)]
    assert not clips[0].left_pause  # speech starts at the very beginning of the recording


def test_clips_never_exceed_the_maximum() -> None:
    regions = [(i * 2.2, i * 2.2 + 2.0) for i in range(20)]  # 0.2 s pauses: all could merge
    clips = plan_clips(regions, 45.0, OPTIONS)
    pad = 2 * OPTIONS.pad_ms / 1000
    assert len(clips) > 1
    assert all(c.speech_end_s - c.speech_start_s + pad <= OPTIONS.max_clip_s for c in clips)
    assert [c.index for c in clips] == list(range(len(clips)))


def test_very_long_silence_always_splits() -> None:
    regions = [(0.0, 0.5), (2.5, 3.0)]  # 2 s pause > max_inner_silence even though both are short
    assert len(plan_clips(regions, 3.5, OPTIONS)) == 2


def test_forced_split_has_no_pause() -> None:
    regions = [(0.5, 6.5), (6.5, 12.5)]  # Silero's hard split inside continuous speech
    clips = plan_clips(regions, 12.0, OPTIONS)
    assert len(clips) == 2
    assert not clips[0].right_pause and not clips[1].left_pause


def _window(speech: list[tuple[float, float]], length_s: float, sample_rate: int = 16000) -> np.ndarray:
    audio = 1e-4 * np.random.default_rng(0).standard_normal(int(length_s * sample_rate)).astype(np.float32)
    for start, end in speech:
        t = np.arange(int(start * sample_rate), int(end * sample_rate))
        audio[t] += 0.3 * np.sin(2 * np.pi * 220 * t / sample_rate).astype(np.float32)
    return audio


def _clip(start: float, end: float, ws: float, we: float, left: bool = True, right: bool = True) -> PlannedClip:
    return PlannedClip(0, start, end, ws, we, left, right, ((start, end),))


def test_cuts_are_padded_and_in_silence() -> None:
    energy = frame_energy_db(_window([(0.6, 2.4)], 3.0))
    start, end, cut = refine_bounds(_clip(0.6, 2.4, 0.0, 3.0), [(0.62, 1.2), (1.3, 2.38)], energy, OPTIONS)
    assert start == pytest.approx(0.6 - OPTIONS.pad_ms / 1000)
    assert end == pytest.approx(2.4 + OPTIONS.pad_ms / 1000)
    assert not cut
    for t in (start, end):
        assert energy[round(t / FRAME_S) - 1] < -60 and energy[round(t / FRAME_S)] < -60


def test_word_outside_the_vad_region_moves_the_cut_past_it() -> None:
    # The VAD missed a quiet final word at 2.6-2.9 s; the transcriber found it.
    energy = frame_energy_db(_window([(0.6, 2.4), (2.6, 2.9)], 3.6))
    _, end, _ = refine_bounds(_clip(0.6, 2.4, 0.0, 3.6), [(0.6, 2.4), (2.6, 2.9)], energy, OPTIONS)
    assert end >= 2.9
    assert end == pytest.approx(2.9 + OPTIONS.pad_ms / 1000, abs=FRAME_S)


def test_word_timestamps_in_silence_do_not_stretch_the_clip() -> None:
    # Whisper often starts the first word at the window start; there is no sound there.
    energy = frame_energy_db(_window([(0.6, 2.4)], 3.0))
    start, _, _ = refine_bounds(_clip(0.6, 2.4, 0.0, 3.0), [(0.0, 1.2), (1.3, 2.4)], energy, OPTIONS)
    assert start == pytest.approx(0.6 - OPTIONS.pad_ms / 1000)


def test_cut_moves_to_the_quietest_frames() -> None:
    # A click 0.1 s before the speech: the cut may not sit on it.
    audio = _window([(0.6, 2.4)], 3.0)
    audio[int(0.44 * 16000) : int(0.47 * 16000)] += 0.2
    energy = frame_energy_db(audio)
    start, _, _ = refine_bounds(_clip(0.6, 2.4, 0.0, 3.0), [(0.62, 2.38)], energy, OPTIONS)
    index = round(start / FRAME_S)
    assert energy[index - 1] < -60 and energy[index] < -60


def test_word_at_a_forced_edge_is_flagged() -> None:
    energy = frame_energy_db(_window([(0.0, 3.0)], 3.0))
    _, _, cut = refine_bounds(_clip(0.3, 3.0, 0.0, 3.0, right=False), [(0.3, 1.5), (1.5, 2.98)], energy, OPTIONS)
    assert cut
    _, _, cut = refine_bounds(_clip(0.3, 3.0, 0.0, 3.0, right=True), [(0.3, 1.5), (1.5, 2.98)], energy, OPTIONS)
    assert not cut


def test_silero_finds_the_sentences_of_a_recording(tmp_path: Path) -> None:
    path, spans = speak_recording(
        tmp_path / "three.wav",
        ["Good morning to all of you.", "How are you feeling today?", "Fine, thanks for asking."],
    )
    regions = detect_speech(decode_audio(path, 16000), OPTIONS)
    clips = plan_clips(regions, spans[-1][1] + 1, OPTIONS)
    assert len(clips) == 3
    for clip, (start, end) in zip(clips, spans, strict=True):
        assert clip.speech_start_s == pytest.approx(start, abs=0.15)
        assert clip.speech_end_s == pytest.approx(end, abs=0.3)  # espeak's files end in silence
