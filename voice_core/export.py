"""Compaction of a training checkpoint into a servable model directory.

The export keeps only the inference weights (optimizer, scaler and DVAE state are dropped), copies
config, vocabulary and speakers from the base model, writes ``manifest.json`` with sizes and
sha256, loads the result once to prove it works, and only then renames it into place.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voice_core.checkpoints import read_state_dict
from voice_core.errors import InvalidInputError
from voice_core.manifest import verify_manifest, write_manifest
from voice_core.storage import atomic_directory
from voice_core.xtts_model import validate_model_dir


@dataclass(frozen=True)
class ExportReport:
    """Result of :func:`export_checkpoint`."""

    model_dir: Path
    source_bytes: int
    exported_bytes: int
    normalisations: list[str]


def export_checkpoint(
    checkpoint: Path,
    base_model_dir: Path,
    output_dir: Path,
    *,
    base_model_id: str,
    training_config: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ExportReport:
    """Write ``output_dir`` in the release layout from a training checkpoint.

    Args:
        checkpoint: a ``.pth``/``.pt``/``.safetensors`` file, possibly holding optimizer state and
            trainer prefixes (``xtts.``, ``module.``...).
        base_model_dir: the model the run started from (config, vocab, speakers come from it).
        output_dir: the new model directory (``<storage>/models/<id>``).
        base_model_id: recorded in the manifest.
        training_config: recorded in the manifest (and ``training_config.json``).
        overwrite: replace an existing ``output_dir``.

    Returns:
        Sizes before and after, and the key normalisations applied.

    Raises:
        InvalidInputError: ``output_dir`` exists and ``overwrite`` is false.
        ModelError: the checkpoint or the base model is unusable, or the result fails to load.
    """
    import torch

    from voice_core.storage import atomic_write_json
    from voice_core.xtts_model import load_xtts

    if output_dir.exists() and not overwrite:
        raise InvalidInputError(f"{output_dir} exists; choose another model id or pass overwrite")
    base = validate_model_dir(base_model_dir)
    state_dict, notes, _fmt = read_state_dict(checkpoint)
    with atomic_directory(output_dir, replace=True) as work:
        torch.save({"model": state_dict}, work / "model.pth")
        for source in (base.config, base.vocab, base.speakers):
            if source is not None:
                shutil.copyfile(source, work / source.name)
        if training_config is not None:
            atomic_write_json(work / "training_config.json", training_config)
        write_manifest(
            work,
            {
                "model_id": output_dir.name,
                "kind": "finetuned",
                "base_model": base_model_id,
                "source_checkpoint": checkpoint.name,
                "training_config": training_config or {},
                "normalisations": notes,
                "note": f"dvae.pth and mel_stats.pth are not copied: training from this model reads "
                f"them from its base model '{base_model_id}'",
            },
        )
        load_xtts(work, model_id=output_dir.name, device="cpu")
        problems = verify_manifest(work)
        if problems:
            raise InvalidInputError("export failed its own manifest check: " + "; ".join(problems))
    exported = sum(p.stat().st_size for p in output_dir.iterdir() if p.is_file())
    return ExportReport(output_dir, checkpoint.stat().st_size, exported, notes)
