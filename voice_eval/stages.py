"""The scoring steps over rows, shared by the Ray Data pipeline and the sequential loop.

A row is a plain dict that Arrow can hold: the clip's and the reference's source as a path or bytes
(``*_rate`` > 0 when the bytes are raw float32 samples at that rate, 0 when they are an audio file),
then the 16 kHz signals as float32 bytes, the signal checks as JSON, the transcript and the similarity.

::

    item row ─▶ decode_row   decode both signals, signal checks (a Ray task per row)
             ─▶ AsrStage     faster-whisper transcript (actor: the model loaded once)
             ─▶ EncoderStage Resemblyzer similarity, reference embeddings cached (actor)
             ─▶ scored_from_row (driver): WER/CER, flags, the record

A clip that cannot be scored (undecodable, reference without speech) keeps its ``error`` and passes
through the model stages untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np

from voice_core.errors import VoiceError
from voice_eval import asr, similarity
from voice_eval.score import ClipScore, Samples, Source, assemble, prepare
from voice_eval.signal import SignalReport

Row = dict[str, Any]


def source_fields(prefix: str, source: Source) -> Row:
    """Row columns ``<prefix>_path``, ``<prefix>_data`` and ``<prefix>_rate`` that carry ``source``."""
    if isinstance(source, Samples):
        data = np.asarray(source.audio, dtype=np.float32)
        return {f"{prefix}_path": "", f"{prefix}_data": data.tobytes(), f"{prefix}_rate": int(source.sample_rate)}
    if isinstance(source, bytes):
        return {f"{prefix}_path": "", f"{prefix}_data": source, f"{prefix}_rate": 0}
    return {f"{prefix}_path": str(source), f"{prefix}_data": b"", f"{prefix}_rate": 0}


def _source(row: Row, prefix: str) -> Source:
    if row[f"{prefix}_path"]:
        return str(row[f"{prefix}_path"])
    data, rate = bytes(row[f"{prefix}_data"]), int(row[f"{prefix}_rate"])
    return Samples(np.frombuffer(data, dtype=np.float32), rate) if rate else data


def _audio(row: Row, column: str) -> np.ndarray:
    return np.frombuffer(bytes(row[column]), dtype=np.float32)


def _reference_key(row: Row) -> str:
    if row["reference_path"]:
        return "path:" + str(row["reference_path"])
    return "sha256:" + hashlib.sha256(bytes(row["reference_data"])).hexdigest()


def decode_row(row: Row, asr_model: str) -> Row:
    """Decode the clip and the reference to 16 kHz and measure the clip; a bad file sets ``error``."""
    out = {**row, "clip_16k": b"", "reference_16k": b"", "signal": "", "silent": False, "error": ""}
    try:
        ready = prepare(
            _source(row, "clip"), row["text"], row["language"], _source(row, "reference"), asr_model=asr_model
        )
    except VoiceError as exc:
        out["error"] = str(exc)
        return out
    out["clip_16k"] = ready.clip.astype(np.float32).tobytes()
    out["reference_16k"] = ready.reference.astype(np.float32).tobytes()
    out["signal"] = json.dumps(dataclasses.asdict(ready.signal))
    out["silent"] = ready.silent
    out["language"] = ready.language
    return out


class AsrStage:
    """Transcribes each clip with one faster-whisper model, loaded in the constructor."""

    def __init__(self, asr_model: str, cache_dir: str, cpu_threads: int = 2) -> None:
        self.model, self.asr_name = asr.load_asr(asr_model, cache_dir, cpu_threads)

    def __call__(self, row: Row) -> Row:
        """Add ``transcript`` (empty for a silent or failed clip) and ``asr_name``."""
        skip = row["error"] or row["silent"]
        transcript = "" if skip else asr.transcribe(self.model, _audio(row, "clip_16k"), row["language"])
        return {**row, "transcript": transcript, "asr_name": self.asr_name}


class EncoderStage:
    """Speaker similarity of each clip to its reference; a reference is embedded once per actor."""

    def __init__(self) -> None:
        self.encoder = similarity.load_encoder()
        self.references: dict[str, np.ndarray] = {}

    def __call__(self, row: Row) -> Row:
        """Add ``similarity`` (0 for a silent or failed clip: there is no voice to compare)."""
        if row["error"] or row["silent"]:
            return {**row, "similarity": 0.0}
        key = _reference_key(row)
        if key not in self.references:
            self.references[key] = self.encoder.embed(_audio(row, "reference_16k"))
        cosine = float(np.dot(self.encoder.embed(_audio(row, "clip_16k")), self.references[key]))
        return {**row, "similarity": cosine}


def score_from_row(row: Row) -> ClipScore | None:
    """The record of a row that went through every stage (``None`` when the row carries an error)."""
    if row["error"]:
        return None
    fields = json.loads(row["signal"])
    if fields["words_per_s_range"] is not None:
        fields["words_per_s_range"] = tuple(fields["words_per_s_range"])
    signal = SignalReport(**fields)
    return assemble(signal, row["text"], row["language"], row["transcript"], float(row["similarity"]), row["asr_name"])
