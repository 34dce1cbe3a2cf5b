"""One clip's quality record: intelligibility, speaker similarity, naturalness and signal checks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_core.decode import decode_audio
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


def load_clip(source: str | os.PathLike[str] | bytes, name: str) -> np.ndarray:
    """Decode ``source`` to 16 kHz mono.

    Raises:
        InvalidInputError: the file does not exist.
        AudioDecodeError: it is not decodable audio (or longer than 10 minutes).
    """
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise InvalidInputError(
            f"{name} {str(source)!r} does not exist or is not a file; give the path of an audio file"
        )
    try:
        return decode_audio(source, SAMPLE_RATE_HZ, max_seconds=MAX_CLIP_S)
    except AudioDecodeError as exc:
        where = "" if isinstance(source, bytes) else f" {str(source)!r}"
        raise AudioDecodeError(f"{name}{where} cannot be decoded: {exc}") from None


def score_clip(
    clip: str | os.PathLike[str] | bytes,
    text: str,
    language: str,
    reference: str | os.PathLike[str] | bytes,
    *,
    asr_model: str = asr.DEFAULT_ASR_MODEL,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ClipScore:
    """Score one clip against its text and the reference recording of the voice it imitates.

    Inputs are checked before any model is loaded or any audio decoded beyond the two files.

    Args:
        clip: the clip (path or bytes of any format :func:`voice_core.decode.decode_audio` reads).
        text: what the clip should say.
        language: its language code (``en``, ``de``, ``pt-BR``...).
        reference: a recording of the target voice.
        asr_model: ``tiny.en`` (English only), ``base`` or a CTranslate2 Whisper directory.
        cache_dir: where ``base`` is joined; ``<storage_root>/cache/whisper`` by default.

    Returns:
        The clip's quality record.

    Raises:
        InvalidInputError: unsupported language, empty text, missing file, a reference without speech.
        AudioDecodeError: a file is not decodable audio.
    """
    code = asr.check_language(asr_model, language)
    if not normalize_text(text, code):
        raise InvalidInputError(f"text {text!r} has no words to score; give the text the clip should say")
    clip_audio = load_clip(clip, "clip")
    reference_audio = load_clip(reference, "reference")

    if "silent" in analyse_signal(reference_audio, text, code).flags:
        where = "" if isinstance(reference, bytes) else f" {str(reference)!r}"
        raise InvalidInputError(f"reference{where} holds no speech; give a recording of the voice the clip imitates")

    signal = analyse_signal(clip_audio, text, code)
    silent = "silent" in signal.flags
    model, asr_name = asr.load_asr(asr_model, str(cache_dir if cache_dir is not None else default_cache_dir()))
    transcript = "" if silent else asr.transcribe(model, clip_audio, code)
    rates = asr.error_rates(text, transcript, code)
    # A silent clip has no voice to compare; 0 rather than the encoder's output on (almost) nothing.
    cosine = 0.0 if silent else similarity.speaker_similarity(similarity.load_encoder(), clip_audio, reference_audio)

    flags = list(signal.flags)
    if rates.wer > UNINTELLIGIBLE_WER:
        flags.append("unintelligible")
    models: dict[str, str | None] = {
        "asr": asr_name,
        "speaker_encoder": similarity.ENCODER_NAME,
        "mos_predictor": mos.MOS_PREDICTOR,
    }
    if mos.MOS_PREDICTOR is None:
        models["mos_unavailable_reason"] = mos.MOS_UNAVAILABLE_REASON
    return ClipScore(
        wer=rates.wer,
        cer=rates.cer,
        similarity=cosine,
        mos=None,
        flags=flags,
        transcript=transcript,
        signal=signal,
        models=models,
    )
