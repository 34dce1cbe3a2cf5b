"""Fixtures for training tests: a tiny espeak-ng LJSpeech dataset and a storage root holding the tiny model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import espeak
from train_jobs.config import FinetuneConfig
from voice_core.settings import Settings

# Short sentences: the tiny model's GPT takes at most 80 audio codes (~3.7 s of audio).
SENTENCES: tuple[str, ...] = (
    "hello there, this is a test.",
    "the quick brown fox jumps.",
    "one two three four five.",
    "please read this slowly.",
    "how are you today?",
    "i am fine, thank you.",
    "speech synthesis with a voice.",
    "the lazy dog sleeps.",
)
TRAIN_CLIPS = 6


def write_dataset(directory: Path, sentences: tuple[str, ...] = SENTENCES, train: int = TRAIN_CLIPS) -> Path:
    """Write an LJSpeech dataset as data_prep does (wavs, metadata with splits, manifest with language)."""
    (directory / "wavs").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, text in enumerate(sentences):
        clip_id = f"speaker-{index:05d}"
        espeak(directory / "wavs" / f"{clip_id}.wav", text)
        rows.append(f"{clip_id}|{text}|{text}")
    (directory / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (directory / "metadata_train.csv").write_text("\n".join(rows[:train]) + "\n", encoding="utf-8")
    (directory / "metadata_eval.csv").write_text("\n".join(rows[train:]) + "\n", encoding="utf-8")
    (directory / "manifest.json").write_text(json.dumps({"language": "en", "kept": len(rows)}), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def train_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight short espeak-ng clips (six for training, two for evaluation). Read-only."""
    return write_dataset(tmp_path_factory.mktemp("train-data") / "speaker")


def link_model(source: Path, models_dir: Path, model_id: str = "tiny-xtts") -> Path:
    """Hard-link a model directory into ``models_dir`` (cheap; the files are never written in place)."""
    target = models_dir / model_id
    target.mkdir(parents=True)
    for path in source.iterdir():
        os.link(path, target / path.name)
    return target


@pytest.fixture
def train_storage_root(tmp_path: Path, tiny_model_dir: Path, train_dataset: Path) -> Path:
    """A storage root holding the tiny model and the dataset ``speaker``."""
    root = tmp_path / "storage"
    link_model(tiny_model_dir, root / "models")
    shutil.copytree(train_dataset, root / "datasets" / "speaker")
    return root


@pytest.fixture
def train_settings(train_storage_root: Path) -> Settings:
    """Settings on :func:`train_storage_root`."""
    return Settings.load(storage_root=train_storage_root)


def small_config(**overrides: Any) -> FinetuneConfig:
    """Options for a quick run on the tiny data (1 CPU per worker, no progress bar, low audio minimum)."""
    values: dict[str, Any] = {
        "dataset": "speaker",
        "base_model": "tiny-xtts",
        "run_name": "run",
        "epochs": 2,
        "batch_size": 2,
        "lr": 1e-3,
        "checkpoint_every_steps": 2,
        "min_audio_s": 1.0,
        "cpus_per_worker": 1.0,
        "progress_bar": False,
        "max_failures": 0,
    }
    values.update(overrides)
    return FinetuneConfig(**values)
