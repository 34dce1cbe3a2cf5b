"""Training methods, registered in one table: what trains, what a checkpoint holds, how it is restored.

- ``lora``: peft LoRA on the GPT-2 blocks inside the XTTS GPT (``c_attn``, ``c_proj``, ``c_fc`` by
  default); everything else is frozen. A checkpoint holds the adapter directory in the format
  serving loads (``adapter_config.json``, ``adapter_model.safetensors``, ``avs_adapter.json``).
- ``full``: the whole GPT trains (the HiFiGAN decoder stays frozen, as in the XTTS recipe). A
  checkpoint holds ``model.pth`` with the whole ``Xtts`` state; the export compacts it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train_jobs.config import FinetuneConfig
from voice_core.adapters import ADAPTER_META, lora_config, save_adapter
from voice_core.checkpoints import ADAPTER_WEIGHTS

FULL_WEIGHTS = "model.pth"


def _freeze_all(xtts: Any) -> None:
    for parameter in xtts.parameters():
        parameter.requires_grad_(False)


def _prepare_lora(xtts: Any, config: FinetuneConfig) -> None:
    from peft import get_peft_model

    _freeze_all(xtts)
    adapter = lora_config(config.lora_rank, config.lora_alpha, config.lora_dropout, tuple(config.lora_targets))
    xtts.gpt.gpt = get_peft_model(xtts.gpt.gpt, adapter)  # only the LoRA matrices require grad


def _save_lora(xtts: Any, directory: Path, config: FinetuneConfig) -> None:
    save_adapter(
        xtts.gpt.gpt,
        directory,
        base_model=config.base_model,
        extra={"rank": config.lora_rank, "alpha": config.lora_alpha, "targets": list(config.lora_targets)},
    )


def _load_lora(xtts: Any, directory: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(xtts.gpt.gpt, load_file(str(directory / ADAPTER_WEIGHTS)))
    if getattr(result, "unexpected_keys", None):
        raise RuntimeError(f"adapter in {directory} has keys this run lacks: {result.unexpected_keys[:4]}")


def _prepare_full(xtts: Any, config: FinetuneConfig) -> None:
    _freeze_all(xtts)
    for parameter in xtts.gpt.parameters():
        parameter.requires_grad_(True)


def _save_full(xtts: Any, directory: Path, config: FinetuneConfig) -> None:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"model": xtts.state_dict()}, directory / FULL_WEIGHTS)


def _load_full(xtts: Any, directory: Path) -> None:
    import torch

    state = torch.load(directory / FULL_WEIGHTS, map_location="cpu", weights_only=True)["model"]
    xtts.load_state_dict(state, strict=True)


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: the ``--method`` value.
        description: one line for help texts and the API.
        prepare: freezes/wraps the ``Xtts`` in place so only the method's parameters train.
        save: writes the trained weights into a checkpoint directory.
        load: restores them from a checkpoint directory written by ``save``.
        weights_file: the file in a checkpoint holding the weights.
    """

    name: str
    description: str
    prepare: Callable[[Any, FinetuneConfig], None]
    save: Callable[[Any, Path, FinetuneConfig], None]
    load: Callable[[Any, Path], None]
    weights_file: str


METHODS: dict[str, Method] = {
    "lora": Method(
        "lora",
        "peft LoRA adapter on the GPT-2 blocks; only adapter weights train",
        _prepare_lora,
        _save_lora,
        _load_lora,
        ADAPTER_WEIGHTS,
    ),
    "full": Method("full", "the whole XTTS GPT trains", _prepare_full, _save_full, _load_full, FULL_WEIGHTS),
}


def get_method(name: str) -> Method:
    """The registered method ``name``.

    Raises:
        KeyError: no such method (the message lists the registered ones).
    """
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown training method {name!r}; choose one of: {', '.join(METHODS)}") from None


def enable_gradient_checkpointing(xtts: Any) -> None:
    """Recompute the GPT-2 blocks' activations in the backward pass instead of keeping them.

    Activations (GELU intermediates, attention probabilities of every layer) dominate a LoRA step's
    memory; checkpointing trades them for about one more forward pass. Losses and gradients are
    unchanged. coqui's GPT deleted the transformer's input embedding (inputs come as embeddings), so
    transformers' ``gradient_checkpointing_enable`` (which looks for it) cannot be used: the
    checkpoint function is installed on the blocks directly, non-reentrant so frozen inputs are fine.
    """
    import functools

    from torch.utils.checkpoint import checkpoint

    transformer = xtts.gpt.gpt
    base = transformer.get_base_model() if hasattr(transformer, "get_base_model") else transformer
    base._set_gradient_checkpointing(
        enable=True, gradient_checkpointing_func=functools.partial(checkpoint, use_reentrant=False)
    )
    base.config.use_cache = False


def is_adapter_checkpoint(directory: Path) -> bool:
    """Whether a checkpoint directory holds a LoRA adapter (rather than full weights)."""
    return (directory / ADAPTER_META).is_file()


def trainable_parameters(module: Any) -> int:
    """Number of parameters that require grad."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
