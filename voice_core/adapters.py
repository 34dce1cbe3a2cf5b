"""LoRA adapters for the XTTS GPT: the on-disk format and how a model is built from one.

An adapter directory under ``models/<id>/`` is a peft directory (``adapter_config.json``,
``adapter_model.safetensors``) for the GPT-2 transformer inside XTTS (``model.gpt.gpt``) plus
``avs_adapter.json`` naming the base model id. Serving loads the base and merges the adapter into
a private copy, so one replica can hold several adapters at once (bounded by multiplexing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voice_core.checkpoints import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_link, sniff_weights_file
from voice_core.errors import CorruptCheckpointError, ModelFilesMissingError
from voice_core.storage import atomic_write_json

ADAPTER_META = "avs_adapter.json"
DEFAULT_TARGET_MODULES: tuple[str, ...] = ("c_attn", "c_proj", "c_fc")


def is_adapter_dir(directory: Path) -> bool:
    """Return whether ``directory`` holds a peft adapter (rather than a full model)."""
    return (directory / ADAPTER_CONFIG).exists() or (directory / ADAPTER_CONFIG).is_symlink()


def read_adapter_meta(directory: Path, allowed_roots: list[Path] | None = None) -> dict[str, Any]:
    """Validate an adapter directory and return its ``avs_adapter.json``.

    Raises:
        ModelFilesMissingError: a file is missing (all missing ones listed).
        DanglingSymlinkError: a file is a dangling or escaping symlink.
        CorruptCheckpointError: the metadata or weights are unreadable.
    """
    names = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_META)
    for name in names:
        check_link(directory / name, allowed_roots)
    missing = [f"  - {name} (expected at {directory / name})" for name in names if not (directory / name).is_file()]
    if missing:
        raise ModelFilesMissingError(f"LoRA adapter {directory} is incomplete; missing:\n" + "\n".join(missing))
    sniff_weights_file(directory / ADAPTER_WEIGHTS)
    try:
        meta = json.loads((directory / ADAPTER_META).read_text(encoding="utf-8"))
        base = meta["base_model"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptCheckpointError(f"{directory / ADAPTER_META} is invalid ({exc}); re-export the adapter") from None
    if not isinstance(base, str) or not base:
        raise CorruptCheckpointError(f"{directory / ADAPTER_META} names no base_model; re-export the adapter")
    return meta


def lora_config(rank: int = 8, alpha: int = 16, dropout: float = 0.0, targets: tuple[str, ...] = DEFAULT_TARGET_MODULES,
                init_weights: bool = True) -> Any:  # fmt: skip
    """Build the peft ``LoraConfig`` for the XTTS GPT (transformers ``Conv1D`` layers: fan_in_fan_out)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets),
        fan_in_fan_out=True,
        init_lora_weights=init_weights,
    )


def save_adapter(peft_gpt: Any, directory: Path, *, base_model: str, extra: dict[str, Any] | None = None) -> None:
    """Save a peft-wrapped XTTS GPT transformer as an adapter directory with its base reference."""
    directory.mkdir(parents=True, exist_ok=True)
    peft_gpt.save_pretrained(str(directory), safe_serialization=True)
    atomic_write_json(directory / ADAPTER_META, {"base_model": base_model, "method": "lora", **(extra or {})})


def merge_adapter(model: Any, directory: Path) -> Any:
    """Merge the adapter in ``directory`` into ``model`` (a loaded coqui ``Xtts``) in place.

    Returns:
        The same model, its GPT transformer carrying the merged weights.
    """
    from peft import PeftModel

    peft_gpt = PeftModel.from_pretrained(model.gpt.gpt, str(directory), is_trainable=False)
    model.gpt.gpt = peft_gpt.merge_and_unload()
    # The inference wrapper holds references to the transformer: rebuild it on the merged weights.
    model.gpt.init_gpt_for_inference(kv_cache=model.args.kv_cache)
    model.gpt.eval()
    return model
