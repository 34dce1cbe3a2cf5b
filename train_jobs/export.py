"""Export a run's checkpoint for serving: a LoRA adapter, a merged model, or a compacted full model.

- ``lora`` runs export the adapter directory (``adapter_config.json``, ``adapter_model.safetensors``,
  ``avs_adapter.json`` naming the base model) plus ``training_config.json`` into
  ``storage/models/<id>/``; with ``merge`` the adapter is merged into the base weights and written
  as a full model instead.
- ``full`` runs go through :func:`voice_core.export.export_checkpoint` (optimizer state dropped,
  manifest with sha256, loaded once before it is renamed into place).

Serving lists both kinds under ``GET /models`` and loads them by id.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from train_jobs.methods import is_adapter_checkpoint
from train_jobs.runner import read_run_record
from voice_core.adapters import ADAPTER_META, read_adapter_meta
from voice_core.checkpoints import ADAPTER_CONFIG, ADAPTER_WEIGHTS, training_checkpoints
from voice_core.errors import InvalidInputError, NotFoundError
from voice_core.export import export_checkpoint
from voice_core.manifest import write_manifest
from voice_core.models import resolve_model
from voice_core.settings import Settings
from voice_core.storage import Storage, atomic_directory, atomic_write_json, validate_component


def pick_checkpoint(storage: Storage, run_dir: Path, which: str) -> dict[str, Any]:
    """``best`` (lowest eval loss), ``latest``, or a checkpoint directory name of the run in ``run_dir``.

    Raises:
        NotFoundError: the run has no (such) checkpoint.
    """
    checkpoints = training_checkpoints(storage.root, run_dir.name, storage.allowed_mounts)
    if not checkpoints:
        raise NotFoundError(f"run {run_dir.name} has no checkpoints yet in {run_dir}; train it first")
    if which == "latest":
        return checkpoints[-1]
    if which == "best":
        return min(checkpoints, key=lambda m: (m.get("eval_loss", float("inf")), -m.get("step", 0)))
    for meta in checkpoints:
        if meta["name"] == which:
            return meta
    names = ", ".join(m["name"] for m in checkpoints)
    raise NotFoundError(f"run {run_dir.name} has no checkpoint {which!r} (it has: {names}; or best, latest)")


def export_run(
    settings: Settings,
    run_name: str,
    *,
    model_id: str | None = None,
    checkpoint: str = "best",
    merge: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export a checkpoint of ``run_name`` into ``storage/models/<model_id>`` (default: the run name).

    Returns:
        What was exported: model id, kind (``lora``/``full``), directory, checkpoint, sizes.

    Raises:
        NotFoundError: unknown run or checkpoint.
        InvalidInputError: bad id, or the target exists and ``overwrite`` is false.
        ModelError: the checkpoint or base model is unusable.
    """
    storage = Storage.from_settings(settings).ensure()
    run_dir = storage.run_dir(run_name)
    record = read_run_record(run_dir)
    if record is None:
        raise NotFoundError(f"no training run {run_name!r} in {storage.runs}")
    chosen = pick_checkpoint(storage, run_dir, checkpoint)
    source = Path(chosen["path"])
    model_id = validate_component(model_id or run_name, "model id")
    output = storage.model_dir(model_id)
    if output.exists() and not overwrite:
        raise InvalidInputError(f"model {model_id!r} exists in {storage.models}; pass another id or overwrite")
    identity = record.get("identity", {})
    base_id = chosen.get("base_model") or identity.get("base_model")
    _, base_dir = resolve_model(settings, storage, base_id)
    training_config = {
        **identity,
        "checkpoint": chosen["name"],
        "step": chosen.get("step"),
        "eval_loss": chosen.get("eval_loss"),
    }
    if is_adapter_checkpoint(source) and not merge:
        read_adapter_meta(source)
        with atomic_directory(output, replace=True) as work:
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_META):
                shutil.copyfile(source / name, work / name)
            atomic_write_json(work / "training_config.json", training_config)
            write_manifest(
                work,
                {
                    "model_id": model_id,
                    "kind": "lora",
                    "base_model": base_id,
                    "source_checkpoint": f"{run_name}/{chosen['name']}",
                },
            )
        kind, source_bytes = "lora", (source / ADAPTER_WEIGHTS).stat().st_size
    else:
        with tempfile.TemporaryDirectory(dir=storage.root) as tmp:
            weights = source / "model.pth"
            if is_adapter_checkpoint(source):
                weights = _merged_weights(base_dir, source, Path(tmp) / "merged.pth")
            report = export_checkpoint(
                weights, base_dir, output, base_model_id=base_id, training_config=training_config, overwrite=True
            )
        kind, source_bytes = ("merged-lora" if merge else "full"), report.source_bytes
    exported = sum(p.stat().st_size for p in output.iterdir() if p.is_file())
    return {
        "model_id": model_id,
        "kind": kind,
        "directory": str(output),
        "checkpoint": chosen["name"],
        "step": chosen.get("step"),
        "eval_loss": chosen.get("eval_loss"),
        "base_model": base_id,
        "source_bytes": source_bytes,
        "exported_bytes": exported,
    }


def _merged_weights(base_dir: Path, adapter_dir: Path, target: Path) -> Path:
    """Write base weights with the adapter merged in, as a state dict file for the exporter."""
    import torch

    from voice_core.adapters import merge_adapter
    from voice_core.xtts_model import load_xtts

    model, _ = load_xtts(base_dir, device="cpu")
    merge_adapter(model, adapter_dir)
    # Inference-only aliases (the wrapper, and wte pointing at the mel embedding) are not stored weights.
    inference_only = ("gpt.gpt_inference.", "gpt.gpt.wte.")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(inference_only)}
    torch.save({"model": state}, target)
    return target
