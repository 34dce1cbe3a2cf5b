"""SRT subtitles: parsing cues, and fitting each cue's speech into its time slot on one track.

Parsing is strict and names the line of the first problem (``SRT line 7: expected ...``), so a
job is refused before any synthesis. Fitting places each cue's audio at its start time; speech
longer than its slot is time-stretched (pitch preserved) up to a limit, and what still does not
fit is kept, overlapping what follows, with a warning naming the cue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from voice_core.errors import InvalidInputError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_TIMING = re.compile(r"^(?P<start>\S+)\s*-->\s*(?P<end>\S+)(?:\s+.*)?$")
# [hours:]minutes:seconds followed by ',' or '.' and 1-3 digits of milliseconds; ASCII digits only
# (``\d`` would also take Arabic-Indic and other Unicode digits).
_STAMP = re.compile(r"^(?:(?P<h>[0-9]+):)?(?P<m>[0-5]?[0-9]):(?P<s>[0-5]?[0-9])[,.](?P<ms>[0-9]{1,3})$")
_NUMBER = re.compile(r"[0-9]{1,9}")
# Formatting that is shown, not spoken: <i>, </font>, {\an8}. Neither body may contain its own
# opener, so a run of unclosed '<' or '{\' is scanned once (linear), not once per opener.
_MARKUP = re.compile(r"<[^<>]*>|\{\\[^{}]*\}")
_LIMIT_SETTING = "AVS_MAX_JOB_AUDIO_SECONDS"
_TIMING_EXAMPLE = "'00:00:01,000 --> 00:00:03,500'"


@dataclass(frozen=True)
class Cue:
    """One subtitle.

    Attributes:
        index: the cue number written in the file.
        start_s: start time in seconds.
        end_s: end time in seconds (later than ``start_s``).
        text: the spoken text (lines joined with spaces, markup removed).
        line: 1-based line of the cue number in the file.
    """

    index: int
    start_s: float
    end_s: float
    text: str
    line: int

    @property
    def slot_s(self) -> float:
        """Length of the cue's time slot in seconds."""
        return self.end_s - self.start_s


def format_timestamp(seconds: float) -> str:
    """Format seconds as an SRT timestamp (``00:01:02,500``)."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def _error(line: int, message: str) -> InvalidInputError:
    return InvalidInputError(f"SRT line {line}: {message}")


def _too_late(line: int, value: str, max_seconds: float) -> InvalidInputError:
    return _error(
        line,
        f"timestamp {value!r} is past the longest job audio of {format_timestamp(max_seconds)} "
        f"({_LIMIT_SETTING}); split the subtitles into several jobs, each starting near 00:00:00",
    )


def _parse_stamp(value: str, line: int, max_seconds: float | None) -> float:
    match = _STAMP.fullmatch(value)
    if match is None:
        raise _error(
            line,
            f"expected a timestamp such as '00:00:01,000' (hours:minutes:seconds,milliseconds; minutes and "
            f"seconds below 60), got {value!r}",
        )
    hours = match["h"] or "0"
    # A thousand years of hours is past any bound; beyond that, int() and float() would overflow.
    if len(hours.lstrip("0")) > 7:
        if max_seconds is not None:
            raise _too_late(line, value, max_seconds)
        raise _error(line, f"timestamp {value!r} has more than 7 digits of hours")
    millis = ((int(hours) * 60 + int(match["m"])) * 60 + int(match["s"])) * 1000 + int(match["ms"].ljust(3, "0"))
    if max_seconds is not None and millis > max_seconds * 1000:
        raise _too_late(line, value, max_seconds)
    return millis / 1000


def _parse_timing(text: str, line: int, max_seconds: float | None) -> tuple[float, float]:
    match = _TIMING.fullmatch(text.strip())
    if match is None:
        raise _error(line, f"expected a timing line such as {_TIMING_EXAMPLE}, got {text.strip()!r}")
    return _parse_stamp(match["start"], line, max_seconds), _parse_stamp(match["end"], line, max_seconds)


def _is_number(line: str) -> bool:
    return _NUMBER.fullmatch(line.strip()) is not None


def _starts_cue(lines: list[str], i: int) -> bool:
    """Whether ``lines[i]`` is a cue number directly followed by a timing line (a missing blank line)."""
    return _is_number(lines[i]) and i + 1 < len(lines) and _TIMING.fullmatch(lines[i + 1].strip()) is not None


def parse_srt(text: str, max_seconds: float | None = None) -> list[Cue]:
    r"""Parse SubRip subtitles.

    Accepts a UTF-8 BOM, CRLF/CR/LF line ends, ``,`` or ``.`` before the milliseconds, optional
    hours, position coordinates after the end time, and multi-line cue text. Markup such as
    ``<i>`` or ``{\an8}`` is removed from the spoken text.

    Args:
        text: the file's content.
        max_seconds: the latest time a cue may end (``max_job_audio_seconds``); None: no bound.

    Returns:
        The cues in file order.

    Raises:
        InvalidInputError: the first problem, naming its 1-based line and what was expected there.
    """
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
    while lines and not lines[-1].strip():
        lines.pop()
    cues: list[Cue] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        number = lines[i].strip()
        if not _is_number(number):
            raise _error(
                i + 1,
                f"expected a cue number (a whole number of ASCII digits, at most 9, such as {len(cues) + 1}), "
                f"got {number[:40]!r}",
            )
        index_line = i + 1
        i += 1
        if i >= len(lines) or not lines[i].strip():
            got = "the end of the file" if i >= len(lines) else "a blank line"
            raise _error(i + 1, f"expected the timing line of cue {number} (such as {_TIMING_EXAMPLE}), got {got}")
        start, end = _parse_timing(lines[i], i + 1, max_seconds)
        if end <= start:
            raise _error(
                i + 1,
                f"cue {number} ends at {format_timestamp(end)}, which is not after its start at "
                f"{format_timestamp(start)}; the end time must be later than the start time",
            )
        i += 1
        text_line = i + 1
        spoken: list[str] = []
        while i < len(lines) and lines[i].strip():
            if spoken and _starts_cue(lines, i):
                break
            spoken.append(lines[i].strip())
            i += 1
        joined = " ".join(_MARKUP.sub("", " ".join(spoken)).split())
        if not joined:
            found = "only markup" if spoken else "no text"
            message = f"expected the text of cue {number} after its timing line, found {found}; add a line to speak"
            raise _error(text_line, message)
        cues.append(Cue(index=int(number), start_s=start, end_s=end, text=joined, line=index_line))
    if not cues:
        raise InvalidInputError(
            "SRT has no cues; expected blocks of a cue number, a timing line such as "
            f"{_TIMING_EXAMPLE}, one or more lines of text, and a blank line"
        )
    return cues


@dataclass(frozen=True)
class Fitted:
    """One cue's audio after fitting.

    Attributes:
        audio: the samples to place at the cue's start.
        rate: the time-stretch factor applied (1.0: none).
        overflow_s: seconds the audio runs past the cue's end (0 when it fits).
    """

    audio: np.ndarray
    rate: float
    overflow_s: float


def time_stretch(audio: np.ndarray, rate: float) -> np.ndarray:
    """Speed ``audio`` up by ``rate`` keeping its pitch (librosa phase vocoder)."""
    import librosa

    n_fft = 2048
    while n_fft > 64 and n_fft > len(audio):
        n_fft //= 2
    return librosa.effects.time_stretch(audio.astype(np.float32), rate=rate, n_fft=n_fft).astype(np.float32)


def fit_clip(audio: np.ndarray, slot_samples: int, sample_rate: int, max_stretch: float) -> Fitted:
    """Fit speech into a slot: as is when shorter, stretched when up to ``max_stretch`` too long.

    Args:
        audio: mono float32 speech.
        slot_samples: length of the cue's slot in samples.
        sample_rate: rate of ``audio``.
        max_stretch: the largest speed-up allowed (1.3 plays 30% faster).

    Returns:
        The fitted audio: the input when it fits; exactly ``slot_samples`` long when a stretch within
        the limit makes it fit; else stretched by ``max_stretch`` and longer than the slot.
    """
    if len(audio) <= slot_samples:
        return Fitted(audio, 1.0, 0.0)
    needed = len(audio) / slot_samples
    if needed <= max_stretch:
        stretched = time_stretch(audio, needed)
        exact = np.zeros(slot_samples, dtype=np.float32)
        exact[: min(slot_samples, len(stretched))] = stretched[:slot_samples]
        return Fitted(exact, needed, 0.0)
    stretched = time_stretch(audio, max_stretch) if max_stretch > 1.0 else audio
    overflow = max(0, len(stretched) - slot_samples) / sample_rate
    return Fitted(stretched, max_stretch, overflow)


def build_track(
    cues: list[Cue], clips: list[np.ndarray], sample_rate: int, max_stretch: float, max_seconds: float | None = None
) -> tuple[np.ndarray, list[str]]:
    """Place each cue's speech at its start time on one track.

    The track is silent between cues and lasts until the last cue's end (longer only when speech
    that could not be fitted runs past it). Overlapping audio is mixed.

    Args:
        cues: the parsed cues.
        clips: one mono float32 clip per cue, in the same order.
        sample_rate: rate of the clips and of the track.
        max_stretch: the largest speed-up allowed when fitting a clip into its slot.
        max_seconds: the longest track (``max_job_audio_seconds``); speech running past it is cut.

    Returns:
        The track and one warning per cue whose speech did not fit even at ``max_stretch``.

    Raises:
        InvalidInputError: a cue ends after ``max_seconds`` (parsing refuses those; this guards the
            memory the track takes against records written some other way).
    """
    if len(cues) != len(clips):
        raise ValueError(f"{len(cues)} cues but {len(clips)} clips")
    if max_seconds is not None:
        for cue in cues:
            if cue.end_s > max_seconds:
                raise InvalidInputError(
                    f"cue {cue.index} ends at {format_timestamp(cue.end_s)}, past the longest job audio of "
                    f"{format_timestamp(max_seconds)} ({_LIMIT_SETTING})"
                )
    placed: list[tuple[int, np.ndarray]] = []
    warnings: list[str] = []
    end = max(round(cue.end_s * sample_rate) for cue in cues)
    for position, (cue, clip) in enumerate(zip(cues, clips, strict=True)):
        start = round(cue.start_s * sample_rate)
        fitted = fit_clip(clip, round(cue.end_s * sample_rate) - start, sample_rate, max_stretch)
        placed.append((start, fitted.audio))
        end = max(end, start + len(fitted.audio))
        if fitted.overflow_s > 0:
            following = cues[position + 1] if position + 1 < len(cues) else None
            where = (
                f"into cue {following.index}"
                if following is not None and following.start_s < cue.end_s + fitted.overflow_s
                else "past its end"
            )
            warnings.append(
                f"cue {cue.index} ({format_timestamp(cue.start_s)} --> {format_timestamp(cue.end_s)}, "
                f"{cue.slot_s:.2f} s slot) needs {len(clip) / sample_rate:.2f} s of speech; even at the "
                f"{max_stretch:g}x stretch limit it runs {fitted.overflow_s:.2f} s {where}"
            )
    if max_seconds is not None and end > round(max_seconds * sample_rate):
        end = round(max_seconds * sample_rate)
        warnings.append(
            f"speech running past {format_timestamp(max_seconds)} was cut at that time, the longest job audio "
            f"({_LIMIT_SETTING})"
        )
    track = np.zeros(end, dtype=np.float32)
    for start, audio in placed:
        piece = audio[: max(0, end - start)]
        track[start : start + len(piece)] += piece
    return track, warnings
