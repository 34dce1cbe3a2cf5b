"""SRT parsing and slot fitting (no Ray, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.jobs.srt import Cue, build_track, fit_clip, format_timestamp, parse_srt
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


def _unbounded_repeats_exclude_their_opener(pattern: str) -> list[str]:
    """Problems of ``pattern``: each branch's unbounded repeat must not match the branch's first literal.

    A repeat that can run over the character a match starts with lets the attempt at every opener
    scan the rest of the text (quadratic on a run of openers); one that stops at the next opener
    makes the attempts scan disjoint stretches (linear).
    """
    from re import _constants as c
    from re import _parser

    def matches(item: tuple, char: int) -> bool:
        op, args = item
        if op is c.LITERAL:
            return args == char
        if op is c.NOT_LITERAL:
            return args != char
        assert op is c.IN, item
        negate = args[0][0] is c.NEGATE
        listed = any(kind is c.LITERAL and value == char for kind, value in args)
        assert all(kind in (c.NEGATE, c.LITERAL) for kind, _ in args), item
        return listed != negate

    parsed = list(_parser.parse(pattern))
    branches = parsed[0][1][1] if parsed[0][0] is c.BRANCH else [parsed]
    problems = []
    for branch in branches:
        items = list(branch)
        assert items[0][0] is c.LITERAL, branch
        opener = items[0][1]
        for op, args in items:
            if op is c.MAX_REPEAT and args[1] is c.MAXREPEAT:
                if any(matches(item, opener) for item in args[2]):
                    problems.append(f"the repeat after {chr(opener)!r} can run over the next {chr(opener)!r}")
    return problems


def test_markup_pattern_is_linear_on_runs_of_openers() -> None:
    from serve_app.jobs.srt import _MARKUP

    assert _unbounded_repeats_exclude_their_opener(_MARKUP.pattern) == []
    assert _unbounded_repeats_exclude_their_opener(r"<[^>]*>|\{\\[^}]*\}") != []  # the old, quadratic one


@pytest.mark.timeout(60)
def test_hostile_markup_of_a_megabyte_parses() -> None:
    for hostile in ("<" * 1_000_000, "{\\" * 500_000):
        cues = parse_srt(f"1\n00:00:01,000 --> 00:00:02,000\nHi {hostile}\n")
        assert cues[0].text.startswith("Hi ")


@pytest.mark.parametrize(
    ("line", "spoken"),
    [
        ("<i>Two</i> <b>words</b>", "Two words"),
        ('<font color="#ff0000">Red</font> text', "Red text"),
        ("{\\an8}{\\pos(10,20)}Top", "Top"),
        ("a < b and c > d", "a d"),
        ("{not markup} stays", "{not markup} stays"),
    ],
)
def test_markup_is_removed_from_real_subtitles(line: str, spoken: str) -> None:
    assert parse_srt(f"1\n00:00:01,000 --> 00:00:02,000\n{line}\n")[0].text == spoken


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (f"1\n{'9' * 400}:00:00,000 --> {'9' * 400}:00:01,000\nHi\n", r"SRT line 2: .*AVS_MAX_JOB_AUDIO_SECONDS"),
        (f"1\n{'9' * 5000}:00:00,000 --> {'9' * 5000}:00:01,000\nHi\n", r"SRT line 2: .*AVS_MAX_JOB_AUDIO_SECONDS"),
        ("1\n99999:00:00,000 --> 99999:00:01,000\nHi\n", r"SRT line 2: .*99999:00:00,000.*AVS_MAX_JOB_AUDIO_SECONDS"),
        ("1\n00:00:01,000 --> 04:00:00,001\nHi\n", r"SRT line 2: .*04:00:00,001.*AVS_MAX_JOB_AUDIO_SECONDS"),
        ("\u00b2\n00:00:01,000 --> 00:00:02,000\nHi\n", r"SRT line 1: expected a cue number"),
        ("\u0661\n00:00:01,000 --> 00:00:02,000\nHi\n", r"SRT line 1: expected a cue number"),
        (f"{'1' * 5000}\n00:00:01,000 --> 00:00:02,000\nHi\n", r"SRT line 1: expected a cue number"),
        ("1\n00:00:0\u0661,000 --> 00:00:02,000\nHi\n", r"SRT line 2: expected a timestamp"),
        ("1\n00:00:01,\u0661 --> 00:00:02,000\nHi\n", r"SRT line 2: expected a timestamp"),
        ("1\n\u0661:00:01,000 --> 00:00:02,000\nHi\n", r"SRT line 2: expected a timestamp"),
    ],
)
def test_numbers_are_ascii_and_the_timeline_is_bounded(text: str, pattern: str) -> None:
    with pytest.raises(InvalidInputError, match=pattern):
        parse_srt(text, max_seconds=4 * 3600)


def test_a_superscript_cue_number_after_the_first_cue_names_its_line() -> None:
    text = "1\n00:00:01,000 --> 00:00:02,000\nHi\n\n\u00b2\n00:00:03,000 --> 00:00:04,000\nYo\n"
    with pytest.raises(InvalidInputError, match=r"SRT line 5: expected a cue number"):
        parse_srt(text, max_seconds=4 * 3600)


def test_a_cue_right_at_the_bound_is_accepted() -> None:
    cues = parse_srt("1\n03:59:59,000 --> 04:00:00,000\nHi\n", max_seconds=4 * 3600)
    assert cues[0].end_s == 4 * 3600


def test_build_track_never_allocates_past_the_bound() -> None:
    far = [Cue(1, 99_999 * 3600.0, 99_999 * 3600.0 + 1, "a", 1)]
    with pytest.raises(InvalidInputError, match=r"cue 1 .*longest job audio"):
        build_track(far, [_tone(0.5)], RATE, 1.3, max_seconds=10.0)
    # Speech that overflows the last cue is cut at the bound, never longer.
    track, warnings = build_track([Cue(1, 0.0, 1.0, "a", 1)], [_tone(2.6)], RATE, 1.3, max_seconds=1.5)
    assert len(track) == round(1.5 * RATE)
    assert any("cut at" in warning for warning in warnings)
