"""Signal checks of one clip: level, clipping, silence at the ends, speech rate and duration.

Everything works on 16 kHz mono audio cut into 10 ms frames (:func:`data_prep.segment.frame_energy_db`).
A frame is *active* when its energy is above both :data:`SILENCE_FLOOR_DB` and the loudest frame minus
:data:`ACTIVE_RANGE_DB`; the *speech span* runs from the first to the last active frame.

Thresholds were set from measurements on real speech (24 clips: the Piper ``en_US-joe-medium`` voice and
the espeak-ng voices ``en-us``, ``en-gb+m3`` and ``en-us+f2``, six sentences each, see docs/quality.md):

- speech rate 3.0–3.9 words/s and 14.6–19.9 characters/s (letters and digits of the normalised text);
  the plausible English range is set to 1.5–5.0 words/s;
- speech span 0.75–1.33 times the duration the text predicts at :data:`TYPICAL_CHARS_PER_S` (15 characters/s);
  a clip is ``truncated`` below 0.55 and ``runaway`` above 1.8;
- trailing silence 0.11–0.31 s and the last frame at least 40 dB below the loudest; a clip whose last 10 ms
  are within :data:`CUT_LEVEL_DB` of the loudest frame stops in the middle of a sound (``truncated``,
  unless it is ``runaway``: then the babble was cut, not the text);
- peak up to 1.0 (Piper normalises to full scale) but no more than a few samples at it: a clip is
  ``clipped`` when more than :data:`CLIPPED_RATIO` of its samples are at or above :data:`CLIP_LEVEL`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from data_prep.segment import FRAME_S, frame_energy_db
from voice_eval.normalize import normalize_text

SAMPLE_RATE_HZ = 16_000
SILENCE_FLOOR_DB = -50.0
"""Frames quieter than this (dB, full-scale sine = -3 dB) are silence whatever the clip's level."""
ACTIVE_RANGE_DB = 40.0
"""Frames more than this below the loudest frame are silence (breath, room tone, resampling noise)."""
MIN_SPEECH_S = 0.15
"""A clip with less active audio than this (or no frame above the floor) is ``silent``."""
CLIP_LEVEL = 0.99
CLIPPED_RATIO = 0.001
"""More than 0.1 % of samples at full scale: the waveform was cut off (measured clean speech: < 0.005 %)."""
CUT_LEVEL_DB = 20.0
TYPICAL_CHARS_PER_S = 15.0
TRUNCATED_RATIO = 0.55
RUNAWAY_RATIO = 1.8

# Characters per second of ordinary read speech, per language (letters and digits only). English is
# measured (above); the others are estimates: syllable-timed alphabetic languages are close to English,
# the ideographic and syllabic scripts carry more sound per character.
CHARS_PER_S: dict[str, float] = {"zh": 5.0, "ja": 8.0, "ko": 6.5}
# Plausible words per second. Languages written without spaces between words get no words/s check.
WORDS_PER_S_RANGE: dict[str, tuple[float, float]] = {"en": (1.5, 5.0)}
DEFAULT_WORDS_PER_S_RANGE = (1.2, 5.5)
_NO_WORD_SPACES = ("zh", "ja", "th", "lo", "km", "my", "bo")


@dataclass(frozen=True)
class SignalReport:
    """Measurements and flags of one clip.

    Attributes:
        duration_s: length of the clip.
        speech_s: speech span, first to last active frame.
        leading_silence_s: silence before the speech span.
        trailing_silence_s: silence after it.
        peak: largest absolute sample.
        clipping_ratio: share of samples at or above :data:`CLIP_LEVEL`.
        words_per_s: words of the text per second of speech span (``None`` when the clip is silent or the
            language is written without spaces).
        words_per_s_range: the plausible range for the language, or ``None``.
        expected_speech_s: the speech span the text length predicts.
        duration_ratio: ``speech_s / expected_speech_s``.
        flags: any of ``silent``, ``clipped``, ``truncated``, ``runaway``.
    """

    duration_s: float
    speech_s: float
    leading_silence_s: float
    trailing_silence_s: float
    peak: float
    clipping_ratio: float
    words_per_s: float | None
    words_per_s_range: tuple[float, float] | None
    expected_speech_s: float
    duration_ratio: float
    flags: list[str]

    def to_dict(self) -> dict[str, object]:
        """JSON form (floats rounded)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 4)
        return out


def expected_speech_s(text: str, language: str) -> float:
    """Speech span in seconds that ``text`` takes at an ordinary reading rate for ``language``."""
    chars = sum(ch.isalnum() for ch in normalize_text(text, language))
    return chars / CHARS_PER_S.get(language, TYPICAL_CHARS_PER_S)


def analyse_signal(audio: np.ndarray, text: str, language: str) -> SignalReport:
    """Measure ``audio`` (16 kHz mono) against its ``text`` and set the flags.

    Args:
        audio: the clip.
        text: what it should say.
        language: bare language code (``en``).

    Returns:
        The measurements and flags.
    """
    audio = np.asarray(audio, dtype=np.float32)
    duration = audio.size / SAMPLE_RATE_HZ
    energy = frame_energy_db(audio, SAMPLE_RATE_HZ) if audio.size else np.full(1, -100.0)
    loudest = float(energy.max())
    active = np.flatnonzero(energy > max(SILENCE_FLOOR_DB, loudest - ACTIVE_RANGE_DB))
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    clipping = float(np.mean(np.abs(audio) >= CLIP_LEVEL)) if audio.size else 0.0
    expected = expected_speech_s(text, language)
    words = len(normalize_text(text, language).split())
    rate_range = None if language in _NO_WORD_SPACES else WORDS_PER_S_RANGE.get(language, DEFAULT_WORDS_PER_S_RANGE)

    flags: list[str] = []
    if active.size == 0 or active.size * FRAME_S < MIN_SPEECH_S:
        speech = float(active.size * FRAME_S)
        lead, trail = duration, 0.0
        rate = None
        flags.append("silent")
    else:
        speech = float((active[-1] - active[0] + 1) * FRAME_S)
        lead = active[0] * FRAME_S
        trail = max(0.0, duration - (active[-1] + 1) * FRAME_S)
        rate = float(words / speech) if rate_range is not None else None
        ratio = speech / expected if expected > 0 else float("inf")
        runaway = ratio > RUNAWAY_RATIO or (rate is not None and rate < rate_range[0])
        # Ending in the middle of a sound means the text was cut off, unless the clip already runs far past
        # its text (then what was cut off is the babble).
        cut_in_sound = bool(energy[-1] >= loudest - CUT_LEVEL_DB) and not runaway
        if ratio < TRUNCATED_RATIO or (rate is not None and rate > rate_range[1]) or cut_in_sound:
            flags.append("truncated")
        if runaway:
            flags.append("runaway")
    if clipping > CLIPPED_RATIO:
        flags.append("clipped")
    return SignalReport(
        duration_s=duration,
        speech_s=float(speech),
        leading_silence_s=float(lead),
        trailing_silence_s=float(trail),
        peak=peak,
        clipping_ratio=clipping,
        words_per_s=rate,
        words_per_s_range=rate_range,
        expected_speech_s=expected,
        duration_ratio=float(speech / expected) if expected > 0 else 0.0,
        flags=flags,
    )
