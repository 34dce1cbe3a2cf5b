"""One clip's quality record: intelligibility, speaker similarity, naturalness and signal checks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_core.decode import decode_audio, resample
from voice_core.errors import AudioDecodeError, InvalidInputError
from voice_eval import asr, mos, similarity
from voice_eval.normalize import normalize_text
from voice_eval.signal import SAMPLE_RATE_HZ, SignalReport, analyse_signal

UNINTELLIGIBLE_WER = 0.5
"""A clip whose WER is above this is flagged ``unintelligible`` (measured: clean speech ≤ 0.1, reversed
speech, noise and the random-weight model ≥ 0.8)."""
MAX_CLIP_S = 600.0


@dataclass(frozen=True)
class ClipScore:
    """The quality record of one clip.

    Attributes:
        wer: word error rate of the transcript against the text.
        cer: character error rate.
        similarity: cosine of the clip's and the reference's speaker embeddings.
        mos: predicted naturalness, ``None`` when no predictor is available (see ``models``).
        flags: signal flags plus ``unintelligible``.
        transcript: what the ASR model heard.
        signal: the signal measurements.
        models: the ASR model, the speaker encoder and the MOS predictor (with the reason when absent).
    """

    wer: float
    cer: float
    similarity: float
    mos: float | None
    flags: list[str]
    transcript: str
    signal: SignalReport
    models: dict[str, str | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "wer": round(self.wer, 4),
            "cer": round(self.cer, 4),
            "similarity": round(self.similarity, 4),
            "mos": self.mos,
            "flags": list(self.flags),
            "transcript": self.transcript,
            "signal": self.signal.to_dict(),
            "models": dict(self.models),
        }


def default_cache_dir() -> Path:
    """``<storage_root>/cache/whisper`` from the settings, where ``base`` is joined (as data_prep does)."""
    from voice_core.settings import Settings

    return Settings.load().storage_root / "cache" / "whisper"


@dataclass(frozen=True)
class Samples:
    """Audio already in memory (e.g. just synthesised): mono or ``(frames, channels)`` samples and their rate."""

    audio: np.ndarray
    sample_rate: int


Source = str | os.PathLike[str] | bytes | Samples
"""A clip or reference: a file path, the bytes of an audio file, or :class:`Samples`."""


def load_clip(source: Source, name: str) -> np.ndarray:
    """Decode (or resample) ``source`` to 16 kHz mono.

    Raises:
        InvalidInputError: the file does not exist, or samples are not mono at a valid rate.
        AudioDecodeError: it is not decodable audio, or it is longer than 10 minutes.
    """
    if isinstance(source, Samples):
        audio = resample(np.asarray(source.audio, dtype=np.float32), source.sample_rate, SAMPLE_RATE_HZ)
        if audio.size > MAX_CLIP_S * SAMPLE_RATE_HZ:
            raise AudioDecodeError(f"{name} is {audio.size / SAMPLE_RATE_HZ:.0f} s long; give at most {MAX_CLIP_S:g} s")
        return audio
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise InvalidInputError(
            f"{name} {str(source)!r} does not exist or is not a file; give the path of an audio file"
        )
    try:
        return decode_audio(source, SAMPLE_RATE_HZ, max_seconds=MAX_CLIP_S)
    except AudioDecodeError as exc:
        raise AudioDecodeError(f"{name}{_where(source)} cannot be decoded: {exc}") from None


def _where(source: Source) -> str:
    return f" {str(source)!r}" if isinstance(source, (str, os.PathLike)) else ""


def check_text(text: str, language: str, asr_model: str) -> str:
    """Check a text and its language before any audio is decoded or model loaded; returns the bare code.

    Raises:
        InvalidInputError: the ASR model cannot transcribe the language, or the text has no words.
    """
    code = asr.check_language(asr_model, language)
    if not normalize_text(text, code):
        raise InvalidInputError(f"text {text!r} has no words to score; give the text the clip should say")
    return code


@dataclass(frozen=True)
class Prepared:
    """A clip ready for the models: both signals at 16 kHz and the clip's signal checks.

    Attributes:
        text: what the clip should say.
        language: the bare language code.
        clip: the clip, 16 kHz mono.
        reference: the reference recording, 16 kHz mono.
        signal: the clip's signal measurements and flags.
    """

    text: str
    language: str
    clip: np.ndarray
    reference: np.ndarray
    signal: SignalReport

    @property
    def silent(self) -> bool:
        """Whether the clip holds no speech (it is then neither transcribed nor embedded)."""
        return "silent" in self.signal.flags


def prepare(clip: Source, text: str, language: str, reference: Source, *, asr_model: str) -> Prepared:
    """Check the inputs, decode both signals and measure the clip (everything before the models).

    Raises:
        InvalidInputError: unsupported language, empty text, missing file, a reference without speech.
        AudioDecodeError: a file is not decodable audio.
    """
    code = check_text(text, language, asr_model)
    clip_audio = load_clip(clip, "clip")
    reference_audio = load_clip(reference, "reference")
    if "silent" in analyse_signal(reference_audio, text, code).flags:
        raise InvalidInputError(
            f"reference{_where(reference)} holds no speech; give a recording of the voice the clip imitates"
        )
    return Prepared(text, code, clip_audio, reference_audio, analyse_signal(clip_audio, text, code))


def model_names(asr_name: str) -> dict[str, str | None]:
    """The ``models`` entry of a record: ASR, speaker encoder, MOS predictor (with the reason when absent)."""
    models: dict[str, str | None] = {
        "asr": asr_name,
        "speaker_encoder": similarity.ENCODER_NAME,
        "mos_predictor": mos.MOS_PREDICTOR,
    }
    if mos.MOS_PREDICTOR is None:
        models["mos_unavailable_reason"] = mos.MOS_UNAVAILABLE_REASON
    return models


def assemble(
    signal: SignalReport, text: str, language: str, transcript: str, cosine: float, asr_name: str
) -> ClipScore:
    """The record of a clip from its signal checks, its transcript and its speaker similarity."""
    rates = asr.error_rates(text, transcript, language)
    flags = list(signal.flags)
    if rates.wer > UNINTELLIGIBLE_WER:
        flags.append("unintelligible")
    return ClipScore(
        wer=rates.wer,
        cer=rates.cer,
        similarity=cosine,
        mos=None,
        flags=flags,
        transcript=transcript,
        signal=signal,
        models=model_names(asr_name),
    )


def score_clip(
    clip: Source,
    text: str,
    language: str,
    reference: Source,
    *,
    asr_model: str = asr.DEFAULT_ASR_MODEL,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ClipScore:
    """Score one clip against its text and the reference recording of the voice it imitates.

    Inputs are checked before any model is loaded or any audio decoded beyond the two files.

    Args:
        clip: the clip (a path, the bytes of any format :func:`voice_core.decode.decode_audio` reads, or
            :class:`Samples`).
        text: what the clip should say.
        language: its language code (``en``, ``de``, ``pt-BR``...).
        reference: a recording of the target voice (same forms as ``clip``).
        asr_model: ``tiny.en`` (English only), ``base`` or a CTranslate2 Whisper directory.
        cache_dir: where ``base`` is joined; ``<storage_root>/cache/whisper`` by default.

    Returns:
        The clip's quality record.

    Raises:
        InvalidInputError: unsupported language, empty text, missing file, a reference without speech.
        AudioDecodeError: a file is not decodable audio.
    """
    ready = prepare(clip, text, language, reference, asr_model=asr_model)
    model, asr_name = asr.load_asr(asr_model, str(cache_dir if cache_dir is not None else default_cache_dir()))
    transcript = "" if ready.silent else asr.transcribe(model, ready.clip, ready.language)
    # A silent clip has no voice to compare; 0 rather than the encoder's output on (almost) nothing.
    cosine = (
        0.0 if ready.silent else similarity.speaker_similarity(similarity.load_encoder(), ready.clip, ready.reference)
    )
    return assemble(ready.signal, text, ready.language, transcript, cosine, asr_name)
