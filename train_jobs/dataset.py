"""Reading and checking an LJSpeech dataset before any training compute starts.

A dataset written by ``data_prep`` holds ``wavs/<id>.wav``, ``metadata.csv`` (``id|text|normalized_text``)
and the ``metadata_train.csv``/``metadata_eval.csv`` splits, plus ``manifest.json`` naming its
language. Every problem found is reported at once, each with its file and line, so one fix round
is enough: malformed lines, missing or unreadable WAVs, clips too long for the model, transcripts
with characters the tokenizer cannot encode or too many tokens, a language the tokenizer lacks,
and too little audio in total.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voice_core.decode import probe_duration
from voice_core.errors import InvalidInputError

METADATA = "metadata.csv"
TRAIN_METADATA = "metadata_train.csv"
EVAL_METADATA = "metadata_eval.csv"
WAVS = "wavs"
DVAE_HOP = 1024  # audio samples per DVAE code (mel hop 256, DVAE downsampling 4)
MAX_WAV_SAMPLES = 255_995  # XTTS recipe: ~11.6 s at 22.05 kHz
EVAL_FRACTION = 0.1
MAX_LISTED_PROBLEMS = 12


@dataclass(frozen=True)
class Clip:
    """One training example."""

    clip_id: str
    audio_file: str
    text: str
    duration_s: float

    def sample(self, language: str) -> dict[str, Any]:
        """The dict coqui's ``XTTSDataset`` reads."""
        return {"text": self.text, "audio_file": self.audio_file, "speaker_name": "speaker", "language": language}


@dataclass
class TrainingData:
    """A checked dataset: its clips by split and what the checks measured."""

    directory: Path
    language: str
    train: list[Clip]
    eval: list[Clip]
    notes: list[str] = field(default_factory=list)

    @property
    def train_audio_s(self) -> float:
        """Total duration of the training split."""
        return sum(c.duration_s for c in self.train)

    def summary(self) -> dict[str, Any]:
        """Counts and durations, as recorded in the run's ``run.json``."""
        return {
            "directory": str(self.directory),
            "language": self.language,
            "train_clips": len(self.train),
            "eval_clips": len(self.eval),
            "train_audio_s": round(self.train_audio_s, 2),
            "eval_audio_s": round(sum(c.duration_s for c in self.eval), 2),
            "notes": self.notes,
        }


@dataclass(frozen=True)
class ModelLimits:
    """What the model can train on, from its config and tokenizer."""

    max_clip_s: float
    max_text_tokens: int
    languages: tuple[str, ...]
    sample_rate: int


def model_limits(config: Any, max_text_tokens: int) -> ModelLimits:
    """Limits of a coqui ``XttsConfig``: the longest clip and transcript one training example may have."""
    args = config.model_args
    sample_rate = int(config.audio.sample_rate)
    codes = int(args.gpt_max_audio_tokens)
    max_samples = min(MAX_WAV_SAMPLES, codes * DVAE_HOP)
    return ModelLimits(
        max_clip_s=max_samples / sample_rate,
        max_text_tokens=min(max_text_tokens, int(args.gpt_max_text_tokens)),
        languages=tuple(config.languages),
        sample_rate=sample_rate,
    )


def dataset_language(directory: Path) -> str | None:
    """The language recorded in the dataset's ``manifest.json``, if any."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    language = manifest.get("language") if isinstance(manifest, dict) else None
    return language if isinstance(language, str) and language else None


def _read_lines(path: Path, problems: list[str]) -> list[tuple[int, str, str]]:
    """``(line number, id, text)`` of a metadata file; malformed lines are added to ``problems``."""
    rows = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        parts = raw.split("|")
        if len(parts) not in (2, 3):
            problems.append(f"{path.name}:{number}: expected 'id|text|normalized_text', got {len(parts)} fields")
            continue
        clip_id = parts[0].strip()
        text = (parts[2] if len(parts) == 3 and parts[2].strip() else parts[1]).strip()
        if not clip_id or not text:
            problems.append(f"{path.name}:{number}: empty {'id' if not clip_id else 'text'}")
            continue
        rows.append((number, clip_id, text))
    return rows


def _splits(
    directory: Path, problems: list[str], shown: str | None = None
) -> tuple[list[tuple[str, int, str, str]], set[str]]:
    """All metadata rows as ``(file, line, id, text)`` and the ids of the evaluation split."""
    train_file, eval_file, all_file = directory / TRAIN_METADATA, directory / EVAL_METADATA, directory / METADATA
    if train_file.is_file():
        rows = [(TRAIN_METADATA, *row) for row in _read_lines(train_file, problems)]
        eval_rows = [(EVAL_METADATA, *row) for row in _read_lines(eval_file, problems)] if eval_file.is_file() else []
        return rows + eval_rows, {row[2] for row in eval_rows}
    if not all_file.is_file():
        raise InvalidInputError(
            f"{shown or directory} holds no {METADATA} (nor {TRAIN_METADATA}); build a dataset with "
            "`python -m data_prep build` or point --dataset at an LJSpeech directory"
        )
    from data_prep.export import split_ids

    rows = [(METADATA, *row) for row in _read_lines(all_file, problems)]
    _train, evaluation = split_ids([row[2] for row in rows], EVAL_FRACTION)
    return rows, set(evaluation)


def load_training_data(
    directory: Path,
    *,
    tokenizer: Any,
    limits: ModelLimits,
    language: str | None,
    min_audio_s: float,
    shown: str | None = None,
) -> TrainingData:
    """Read and check a dataset, raising one error that lists every problem found.

    Args:
        directory: the dataset directory.
        tokenizer: the base model's coqui ``VoiceBpeTokenizer``.
        limits: from :func:`model_limits`.
        language: the dataset language; None reads ``manifest.json``.
        min_audio_s: the least total training audio accepted.
        shown: how messages name the dataset (``storage/datasets/<name>`` for runs started over HTTP,
            whose messages must not carry server paths); default: the directory.

    Raises:
        InvalidInputError: the dataset is missing, empty or malformed, a clip or transcript is too
            long, the language is unknown to the tokenizer, or there is too little audio.
    """
    shown = shown or str(directory)
    if not directory.is_dir():
        raise InvalidInputError(f"dataset {shown} does not exist; build one with `python -m data_prep build`")
    language = _checked_language(directory, language, tokenizer, limits, shown)
    problems: list[str] = []
    rows, eval_ids = _splits(directory, problems, shown)
    if not rows and not problems:
        raise InvalidInputError(f"dataset {shown} has no clips in its metadata; build it again with more audio")
    train, evaluation = _checked_clips(directory, rows, eval_ids, tokenizer, language, limits, problems)
    if problems:
        _raise_problems(shown, problems)
    if not train:
        raise InvalidInputError(f"dataset {shown} has no training clips; add recordings")
    notes = []
    if not evaluation:
        evaluation = train[-1:]
        notes.append("the dataset has no evaluation split: eval loss is measured on one training clip")
    data = TrainingData(directory, language, train, evaluation, notes)
    if data.train_audio_s < min_audio_s:
        raise InvalidInputError(
            f"dataset {shown} has {data.train_audio_s:.1f} s of training audio, less than the "
            f"{min_audio_s:.0f} s required; add recordings or lower --min-audio-s"
        )
    return data


def _checked_language(directory: Path, language: str | None, tokenizer: Any, limits: ModelLimits, shown: str) -> str:
    """The dataset language (given, or from ``manifest.json``), if the tokenizer has it."""
    language = language or dataset_language(directory)
    if not language:
        raise InvalidInputError(f"{shown}/manifest.json names no language; pass --language")
    vocab = tokenizer.tokenizer.get_vocab() if getattr(tokenizer, "tokenizer", None) else {}
    if language not in limits.languages or f"[{language}]" not in vocab:
        raise InvalidInputError(
            f"the base model's tokenizer has no language {language!r} (it has: {', '.join(limits.languages)}); "
            "fine-tune a base model that supports it"
        )
    return language


def _checked_clips(
    directory: Path,
    rows: list[tuple[str, int, str, str]],
    eval_ids: set[str],
    tokenizer: Any,
    language: str,
    limits: ModelLimits,
    problems: list[str],
) -> tuple[list[Clip], list[Clip]]:
    """The usable clips of ``rows`` as ``(train, eval)``; every other row adds its problem to ``problems``."""
    train: list[Clip] = []
    evaluation: list[Clip] = []
    seen: set[str] = set()
    for name, number, clip_id, text in rows:
        where = f"{name}:{number}"
        if clip_id in seen:
            problems.append(f"{where}: id {clip_id!r} appears twice")
            continue
        seen.add(clip_id)
        clip = _checked_clip(directory / WAVS / f"{clip_id}.wav", clip_id, text, tokenizer, language, limits)
        if isinstance(clip, str):
            problems.append(f"{where}: {clip}")
            continue
        (evaluation if clip_id in eval_ids else train).append(clip)
    return train, evaluation


def _checked_clip(wav: Path, clip_id: str, text: str, tokenizer: Any, language: str, limits: ModelLimits) -> Clip | str:
    """The clip, or what is wrong with it: its WAV unreadable or too long, its text unencodable or too long."""
    try:
        duration = probe_duration(wav)
    except Exception as exc:  # probing raises several types; the message says what broke
        return f"{WAVS}/{clip_id}.wav unreadable ({str(exc).splitlines()[0][:120]})"
    if duration > limits.max_clip_s:
        return f"clip {clip_id} is {duration:.2f} s, longer than the model's {limits.max_clip_s:.2f} s"
    tokens = tokenizer.encode(text, language)
    if 1 in tokens:  # [UNK]
        return f"text has characters the tokenizer cannot encode: {text[:80]!r}"
    if len(tokens) > limits.max_text_tokens:
        return f"text is {len(tokens)} tokens, more than {limits.max_text_tokens}"
    return Clip(clip_id, str(wav), text, duration)


def _raise_problems(shown: str, problems: list[str]) -> None:
    """Raise one error listing the first :data:`MAX_LISTED_PROBLEMS` problems and counting the rest."""
    listed = problems[:MAX_LISTED_PROBLEMS]
    more = len(problems) - len(listed)
    raise InvalidInputError(
        f"dataset {shown} has {len(problems)} problem(s):\n  "
        + "\n  ".join(listed)
        + (f"\n  ... and {more} more" if more else "")
        + "\nfix or remove these lines (or rebuild the dataset with tighter filters)"
    )


def steps_per_epoch(clips: int, batch_size: int, workers: int, grad_accum: int) -> tuple[int, int]:
    """``(micro-batches, optimizer steps)`` per epoch on each worker."""
    per_worker = math.ceil(clips / workers)
    batches = max(1, math.ceil(per_worker / batch_size))
    return batches, math.ceil(batches / grad_accum)
