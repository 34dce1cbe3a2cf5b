"""SRT parsing and slot fitting (no Ray, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.srt import Cue, build_track, fit_clip, format_timestamp, parse_srt
from voice_core.errors import InvalidInputError

RATE = 8000

VALID = """1
00:00:01,000 --> 00:00:02,500
Hello there.

2
00:00:03.250 --> 00:00:05.000 X1:10 X2:20
<i>Two lines</i>
of text.

3
01:00:00,5 --> 01:00:01,75
{\\an8}Last one.
"""


def test_parses_multi_cue_with_multiline_text_and_both_separators() -> None:
    cues = parse_srt(VALID)
    assert [c.index for c in cues] == [1, 2, 3]
    assert (cues[0].start_s, cues[0].end_s, cues[0].text, cues[0].line) == (1.0, 2.5, "Hello there.", 1)
    assert (cues[1].start_s, cues[1].end_s) == (3.25, 5.0)
    assert cues[1].text == "Two lines of text."
    assert cues[1].line == 5
    assert (cues[2].start_s, cues[2].end_s, cues[2].text) == (3600.5, 3601.75, "Last one.")


def test_bom_crlf_and_missing_blank_line_between_cues() -> None:
    text = "\ufeff1\r\n00:00:00,000 --> 00:00:01,000\r\nOne\r\n2\r\n00:00:01,000 --> 00:00:02,000\r\nTwo\r\n"
    assert [(c.index, c.text, c.line) for c in parse_srt(text)] == [(1, "One", 1), (2, "Two", 4)]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("1\n00:00:01 --> 00:00:02,000\nHi\n", r"SRT line 2: expected a timestamp .* got '00:00:01'"),
        ("1\n00:00:01,000 -> 00:00:02,000\nHi\n", r"SRT line 2: expected a timing line"),
        ("1\n00:00:61,000 --> 00:01:02,000\nHi\n", r"SRT line 2: .*below 60"),
        ("1\n00:00:03,000 --> 00:00:02,000\nHi\n", r"SRT line 2: cue 1 ends at 00:00:02,000.*start at 00:00:03,000"),
        ("1\n00:00:01,000 --> 00:00:02,000\n\n2\n", r"SRT line 3: expected the text of cue 1"),
        ("1\n00:00:01,000 --> 00:00:02,000\n<i></i>\n", r"SRT line 3: .*only markup"),
        ("1\n00:00:01,000 --> 00:00:02,000\nHi\n\nfirst\n00:00:03,000 --> 00:00:04,000\n", r"SRT line 5: .*number.*2"),
        ("1\n", r"SRT line 2: expected the timing line of cue 1 .* end of the file"),
        ("\n\n", r"SRT has no cues"),
    ],
)
def test_malformed_input_names_the_line(text: str, pattern: str) -> None:
    with pytest.raises(InvalidInputError, match=pattern):
        parse_srt(text)


def test_format_timestamp() -> None:
    assert format_timestamp(3723.5) == "01:02:03,500"


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_fit_keeps_short_audio_and_stretches_within_limit_to_the_exact_slot() -> None:
    short = _tone(0.5)
    assert fit_clip(short, RATE, RATE, 1.3).audio is short
    fitted = fit_clip(_tone(1.2), RATE, RATE, 1.3)
    assert len(fitted.audio) == RATE
    assert fitted.rate == pytest.approx(1.2)
    assert fitted.overflow_s == 0


def test_track_pads_with_silence_and_warns_about_overflow() -> None:
    cues = [Cue(1, 0.5, 1.5, "a", 1), Cue(2, 2.0, 3.0, "b", 5), Cue(7, 3.0, 4.0, "c", 9)]
    clips = [_tone(0.4), _tone(2.0), _tone(0.5)]
    track, warnings = build_track(cues, clips, RATE, 1.3)
    assert len(track) == 4 * RATE
    assert not track[: RATE // 2].any()  # silence before the first cue
    assert np.abs(track[RATE // 2 : RATE // 2 + 100]).max() > 0
    assert len(warnings) == 1
    assert warnings[0].startswith("cue 2 (00:00:02,000 --> 00:00:03,000, 1.00 s slot) needs 2.00 s")
    assert "runs 0.54 s into cue 7" in warnings[0]


def test_last_cue_overflow_extends_the_track() -> None:
    track, warnings = build_track([Cue(1, 0.0, 1.0, "a", 1)], [_tone(2.6)], RATE, 1.3)
    assert len(track) == pytest.approx(2.0 * RATE, abs=RATE * 0.02)
    assert "past its end" in warnings[0]
