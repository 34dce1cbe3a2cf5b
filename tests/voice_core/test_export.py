"""Tests for voice_core.export: a coqui-trainer checkpoint of the tiny model compacted into a model dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from voice_core.errors import CheckpointMismatchError, CorruptCheckpointError, InvalidInputError
from voice_core.export import ExportReport, export_checkpoint
from voice_core.manifest import read_manifest, sha256_file, verify_manifest
from voice_core.xtts_model import load_xtts

TRAINING_CONFIG = {"method": "full", "epochs": 1, "lr": 5e-6, "dataset": "espeak-demo"}
SERVABLE_FILES = [
    "config.json",
    "manifest.json",
    "model.pth",
    "speakers_xtts.pth",
    "training_config.json",
    "vocab.json",
]
DVAE_KEYS = {
    "dvae.encoder.0.0.weight": (512, 80, 3),
    "dvae.codebook.embed": (1024, 512),
    "dvae.decoder.0.weight": (512, 512, 1),
    "torch_mel_spectrogram_dvae.mel_stft.mel_scale.fb": (513, 80),
}


@pytest.fixture(scope="module")
def tiny_state(tiny_model_dir: Path) -> dict[str, torch.Tensor]:
    """The tiny model's weights as written to model.pth."""
    return torch.load(tiny_model_dir / "model.pth", map_location="cpu", weights_only=True)["model"]


def _trainer_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What coqui's Trainer saves for GPTTrainer: prefixed weights, DVAE, Adam state, scaler."""
    weights = {f"xtts.{key}": value for key, value in state.items()}
    generator = torch.Generator().manual_seed(0)
    weights.update({key: torch.randn(shape, generator=generator) for key, shape in DVAE_KEYS.items()})
    params = [value for value in state.values() if value.is_floating_point()]
    optimizer = {
        "state": {
            index: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            for index, p in enumerate(params)
        },
        "param_groups": [
            {"lr": 5e-6, "betas": (0.9, 0.96), "eps": 1e-8, "weight_decay": 1e-2, "params": list(range(len(params)))}
        ],
    }
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000}
    return {"model": weights, "optimizer": optimizer, "scaler": scaler, "step": 10, "epoch": 1}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_state: dict[str, torch.Tensor]) -> Path:
    """A training checkpoint of the tiny model as coqui's trainer writes it."""
    path = tmp_path_factory.mktemp("run") / "checkpoint_10.pth"
    torch.save(_trainer_checkpoint(tiny_state), path)
    return path


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, tiny_model_dir: Path
) -> tuple[ExportReport, Path]:
    """The checkpoint exported once into ``<storage>/models/finetuned``."""
    output = tmp_path_factory.mktemp("storage") / "models" / "finetuned"
    report = export_checkpoint(
        checkpoint, tiny_model_dir, output, base_model_id="tiny-xtts", training_config=TRAINING_CONFIG
    )
    return report, output


def _snapshot(directory: Path) -> dict[str, tuple[int, str]]:
    return {
        path.relative_to(directory).as_posix(): (path.stat().st_size, sha256_file(path) if path.is_file() else "")
        for path in sorted(directory.rglob("*"))
    }


def test_export_drops_training_state(
    exported: tuple[ExportReport, Path], checkpoint: Path, tiny_model_dir: Path, tiny_state: dict[str, torch.Tensor]
) -> None:
    report, output = exported

    assert report.model_dir == output
    assert sorted(p.name for p in output.iterdir()) == SERVABLE_FILES
    total = sum(p.stat().st_size for p in output.iterdir())
    assert report.source_bytes == checkpoint.stat().st_size
    assert report.exported_bytes == total
    assert total < checkpoint.stat().st_size / 2
    assert report.normalisations == [
        f"stripped prefix 'xtts.' from {len(tiny_state)} keys",
        "dropped 4 trainer-only keys (dvae, torch_mel_spectrogram_dvae, torch_mel_spectrogram_style_encoder)",
    ]
    saved = torch.load(output / "model.pth", map_location="cpu", weights_only=True)
    assert list(saved) == ["model"]
    assert set(saved["model"]) == set(tiny_state)
    assert all(torch.equal(saved["model"][key], value) for key, value in tiny_state.items())
    for name in ("config.json", "vocab.json", "speakers_xtts.pth"):
        assert (output / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
    assert json.loads((output / "training_config.json").read_text()) == TRAINING_CONFIG
    assert not [p.name for p in output.parent.iterdir() if p.name.startswith(".")]


def test_exported_model_loads(exported: tuple[ExportReport, Path], tiny_state: dict[str, torch.Tensor]) -> None:
    _report, output = exported

    model, load_report = load_xtts(output, device="cpu")

    assert load_report.model_id == "finetuned"
    assert load_report.normalisations == []
    state = model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in tiny_state.items())


def test_manifest_lists_files_and_provenance(exported: tuple[ExportReport, Path], checkpoint: Path) -> None:
    report, output = exported

    assert verify_manifest(output) == []
    manifest = read_manifest(output)
    assert manifest is not None
    assert sorted(manifest["files"]) == [name for name in SERVABLE_FILES if name != "manifest.json"]
    for name, entry in manifest["files"].items():
        assert entry == {"bytes": (output / name).stat().st_size, "sha256": sha256_file(output / name)}, name
    assert manifest["total_bytes"] == sum(entry["bytes"] for entry in manifest["files"].values())
    assert manifest["base_model"] == "tiny-xtts"
    assert manifest["model_id"] == "finetuned"
    assert manifest["kind"] == "finetuned"
    assert manifest["source_checkpoint"] == checkpoint.name
    assert manifest["training_config"] == TRAINING_CONFIG
    assert manifest["normalisations"] == report.normalisations


def test_verify_manifest_reports_tampering(exported: tuple[ExportReport, Path], tmp_path: Path) -> None:
    _report, output = exported
    copy = tmp_path / "copy"
    shutil.copytree(output, copy)
    assert verify_manifest(copy) == []

    weights = copy / "model.pth"
    with weights.open("r+b") as handle:
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert verify_manifest(copy) == ["model.pth: sha256 differs from the manifest"]

    with (copy / "vocab.json").open("a") as handle:
        handle.write(" ")
    (copy / "speakers_xtts.pth").unlink()
    vocab_bytes = (copy / "vocab.json").stat().st_size
    assert verify_manifest(copy) == [
        "model.pth: sha256 differs from the manifest",
        "speakers_xtts.pth: listed in the manifest but missing",
        f"vocab.json: {vocab_bytes} bytes, manifest says {vocab_bytes - 1}",
    ]

    (copy / "manifest.json").unlink()
    assert verify_manifest(copy) == [f"{copy / 'manifest.json'} is missing"]


def test_existing_output_needs_overwrite(checkpoint: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "models" / "finetuned"
    output.mkdir(parents=True)
    (output / "model.pth").write_bytes(b"previous export")
    (output / "notes.txt").write_text("keep me")
    before, parent_before = _snapshot(output), sorted(p.name for p in output.parent.iterdir())

    with pytest.raises(InvalidInputError) as info:
        export_checkpoint(checkpoint, tiny_model_dir, output, base_model_id="tiny-xtts")

    assert str(output) in str(info.value) and "overwrite" in str(info.value)
    assert _snapshot(output) == before
    assert sorted(p.name for p in output.parent.iterdir()) == parent_before

    report = export_checkpoint(checkpoint, tiny_model_dir, output, base_model_id="tiny-xtts", overwrite=True)

    assert sorted(p.name for p in output.iterdir()) == [n for n in SERVABLE_FILES if n != "training_config.json"]
    assert verify_manifest(output) == []
    assert report.exported_bytes < report.source_bytes
    assert sorted(p.name for p in output.parent.iterdir()) == parent_before


def test_failed_export_leaves_nothing_behind(
    tiny_model_dir: Path, tiny_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    bad = {f"xtts.{key}": value for key, value in tiny_state.items()}
    bad["xtts.gpt.text_embedding.weight"] = torch.zeros(7, 3)
    checkpoint = tmp_path / "bad.pth"
    torch.save({"model": bad, "step": 1}, checkpoint)
    models = tmp_path / "storage" / "models"
    (models / "other").mkdir(parents=True)

    with pytest.raises(CheckpointMismatchError) as info:
        export_checkpoint(checkpoint, tiny_model_dir, models / "finetuned", base_model_id="tiny-xtts")

    assert "gpt.text_embedding.weight: checkpoint (7, 3)" in str(info.value)
    assert sorted(p.name for p in models.iterdir()) == ["other"]


def test_corrupt_checkpoint_export_leaves_nothing_behind(
    checkpoint: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    truncated = tmp_path / "model_last.pth"
    with checkpoint.open("rb") as handle:
        truncated.write_bytes(handle.read(1_000_000))
    models = tmp_path / "models"
    models.mkdir()

    with pytest.raises(CorruptCheckpointError, match=r"model_last\.pth"):
        export_checkpoint(truncated, tiny_model_dir, models / "finetuned", base_model_id="tiny-xtts")

    assert list(models.iterdir()) == []
