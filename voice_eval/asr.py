"""Intelligibility: a faster-whisper transcript scored against the input text (WER and CER with jiwer).

Models come from :func:`data_prep.transcribe.resolve_model` (never downloaded): ``tiny.en``, which is
English only, and the multilingual ``base``. Each model is loaded once per process by
:func:`load_asr`. Decoding is greedy (beam 1, temperature 0) without Whisper's VAD, so a clip is
transcribed the same way every time and babble or noise is not filtered out before it is heard.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from voice_core.errors import InvalidInputError
from voice_eval.normalize import normalize_text

ASR_SAMPLE_RATE_HZ = 16_000
DEFAULT_ASR_MODEL = "tiny.en"
_ENGLISH_ONLY = ("tiny.en",)


@dataclass(frozen=True)
class Intelligibility:
    """How well the clip's transcript matches its text.

    Attributes:
        wer: word error rate of the normalised transcript against the normalised text (0 is perfect;
            it can exceed 1 when the transcript has many extra words).
        cer: character error rate on the same normalised strings.
        transcript: what the ASR model heard, as it wrote it.
        reference_normalized: the text after :func:`normalize_text`.
        transcript_normalized: the transcript after :func:`normalize_text`.
    """

    wer: float
    cer: float
    transcript: str
    reference_normalized: str
    transcript_normalized: str


def language_code(language: str) -> str:
    """The bare lowercase code of ``language`` (``en-US`` and ``en_us`` become ``en``)."""
    return language.strip().replace("_", "-").split("-")[0].lower()


def check_language(model_name: str, language: str) -> str:
    """Check that the ASR model can transcribe ``language`` before anything is loaded.

    Args:
        model_name: ``tiny.en``, ``base`` or a CTranslate2 Whisper directory.
        language: the clip's language code.

    Returns:
        The bare language code Whisper expects.

    Raises:
        InvalidInputError: the language is not one Whisper knows, or the model is English only.
        ConfigError: ``model_name`` is neither a known offline model nor a model directory.
    """
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    code = language_code(language)
    if code not in _LANGUAGE_CODES:
        raise InvalidInputError(
            f"language {language!r} is not one Whisper can transcribe; use an ISO 639-1 code such as "
            f"'en', 'de' or 'fr' (one of {len(_LANGUAGE_CODES)} Whisper languages)"
        )
    if code != "en" and not _is_multilingual(model_name):
        raise InvalidInputError(
            f"ASR model {model_name!r} is English only and cannot score language {language!r}; "
            "use --asr-model base (multilingual) for it"
        )
    return code


def _is_multilingual(model_name: str) -> bool:
    if model_name in _ENGLISH_ONLY:
        return False
    if model_name == "base":
        return True
    from data_prep.transcribe import resolve_model

    # A model directory: resolving it only reads its vocabulary (only ``base`` is ever joined or copied).
    return resolve_model(model_name, Path(".")).multilingual


@lru_cache(maxsize=4)
def load_asr(model_name: str, cache_dir: str, cpu_threads: int = 2) -> tuple[Any, str]:
    """The faster-whisper model ``model_name``, loaded once per process.

    Args:
        model_name: ``tiny.en``, ``base`` or a CTranslate2 model directory.
        cache_dir: where ``base`` is joined from its package parts (under the storage root).
        cpu_threads: CTranslate2 threads (the transcript does not depend on it: int8 on CPU).

    Returns:
        The ``WhisperModel`` and the name recorded with scores.
    """
    from faster_whisper import WhisperModel

    from data_prep.transcribe import resolve_model

    resolved = resolve_model(model_name, Path(cache_dir))
    model = WhisperModel(str(resolved.path), device="cpu", compute_type="int8", cpu_threads=cpu_threads)
    recorded = f"faster-whisper {model_name}" if model_name in ("tiny.en", "base") else str(resolved.path)
    return model, recorded


def transcribe(model: Any, audio: np.ndarray, language: str) -> str:
    """Transcript of 16 kHz mono ``audio`` (greedy, no VAD filter, no conditioning on earlier text)."""
    multilingual = bool(model.model.is_multilingual)
    segments, _ = model.transcribe(
        np.asarray(audio, dtype=np.float32),
        language=language if multilingual else "en",
        beam_size=1,
        temperature=0.0,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    return " ".join(" ".join(segment.text for segment in segments).split())


def error_rates(text: str, transcript: str, language: str) -> Intelligibility:
    """WER and CER of ``transcript`` against ``text``, both normalised the same way.

    Args:
        text: what the clip should say.
        transcript: what the ASR model heard.
        language: the clip's language code.

    Returns:
        The error rates with both normalised strings.

    Raises:
        InvalidInputError: ``text`` has no words once normalised.
    """
    import jiwer

    reference = normalize_text(text, language)
    if not reference:
        raise InvalidInputError(f"text {text!r} has no words to score; give the text the clip should say")
    hypothesis = normalize_text(transcript, language)
    return Intelligibility(
        wer=float(jiwer.wer(reference, hypothesis)),
        cer=float(jiwer.cer(reference, hypothesis)),
        transcript=transcript,
        reference_normalized=reference,
        transcript_normalized=hypothesis,
    )
