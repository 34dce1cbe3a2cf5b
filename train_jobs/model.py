"""Building coqui's ``GPTTrainer`` (the XTTS GPT training module) from a model directory.

The trainer module is coqui's own: its data set (conditioning slices of 3-6 s from the same
speaker, masking approach), DVAE codes as targets, text and mel cross-entropy losses and its AdamW
parameter groups (weight decay on weights only). This module only points it at local files (its
defaults name URLs) and loads the base weights through the project's checked loader.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voice_core.checkpoints import check_state_dict, read_state_dict
from voice_core.errors import ModelFilesMissingError
from voice_core.manifest import read_manifest
from voice_core.storage import Storage
from voice_core.xtts_model import ModelFiles, decoder_width, set_decoder_width, validate_model_dir

ADAM_BETAS = (0.9, 0.96)
MIN_CONDITIONING_SAMPLES = 66_150  # 3 s at 22.05 kHz (XTTS recipe)
MAX_CONDITIONING_SAMPLES = 132_300  # 6 s


@dataclass(frozen=True)
class TrainingFiles:
    """The base model's files plus the DVAE and mel statistics training needs."""

    model: ModelFiles
    dvae: Path
    mel_stats: Path


def training_files(model_dir: Path, storage: Storage) -> TrainingFiles:
    """Find the files training needs; a fine-tuned export borrows ``dvae.pth``/``mel_stats.pth`` from its base.

    Raises:
        ModelFilesMissingError: the DVAE or mel statistics are nowhere to be found.
    """
    files = validate_model_dir(model_dir, allowed_roots=storage.allowed_roots())
    dvae, mel_stats = files.dvae, files.mel_stats
    base = (read_manifest(model_dir) or {}).get("base_model")
    if (dvae is None or mel_stats is None) and isinstance(base, str) and base:
        base_dir = storage.model_dir(base)
        dvae = dvae or (base_dir / "dvae.pth" if (base_dir / "dvae.pth").is_file() else None)
        mel_stats = mel_stats or (base_dir / "mel_stats.pth" if (base_dir / "mel_stats.pth").is_file() else None)
    missing = [name for name, path in (("dvae.pth", dvae), ("mel_stats.pth", mel_stats)) if path is None]
    if missing:
        raise ModelFilesMissingError(
            f"model {model_dir.name} cannot be fine-tuned: {', '.join(missing)} missing in {model_dir}"
            + (f" and its base {base}" if base else "")
            + "; copy them from the XTTS-v2 release into the model directory"
        )
    return TrainingFiles(files, dvae, mel_stats)


def base_config(files: TrainingFiles) -> Any:
    """The model's coqui ``XttsConfig``."""
    from TTS.tts.configs.xtts_config import XttsConfig

    config = XttsConfig()
    config.load_json(str(files.model.config))
    return config


def coqui_trainer_module(name: str) -> Any:
    """Import ``TTS.tts.layers.xtts.trainer.<name>``, keeping torch's intra-op thread count.

    Coqui's ``TTS.tts.layers.xtts.trainer.dataset`` calls ``torch.set_num_threads(1)`` when it is imported
    (and ``gpt_trainer`` imports it), which would leave a training worker on one core whatever CPUs Ray
    gave it (Ray sets ``OMP_NUM_THREADS`` to the worker's CPUs). Import it through this function.
    """
    import importlib

    import torch

    threads = torch.get_num_threads()
    module = importlib.import_module(f"TTS.tts.layers.xtts.trainer.{name}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return module


def trainer_config(
    files: TrainingFiles, *, lr: float, weight_decay: float, batch_size: int, seed: int, max_text_tokens: int
) -> Any:
    """A ``GPTTrainerConfig`` with the base model's architecture and local file paths."""
    gpt_trainer = coqui_trainer_module("gpt_trainer")

    base = base_config(files)
    names = {f.name for f in dataclasses.fields(gpt_trainer.GPTArgs)}
    args = gpt_trainer.GPTArgs(**{k: v for k, v in base.model_args.to_dict().items() if k in names})
    args.tokenizer_file = str(files.model.vocab)
    args.mel_norm_file = str(files.mel_stats)
    args.dvae_checkpoint = str(files.dvae)
    args.xtts_checkpoint = ""  # loaded by load_base_weights, with the project's checks
    args.min_conditioning_length = MIN_CONDITIONING_SAMPLES
    args.max_conditioning_length = MAX_CONDITIONING_SAMPLES
    args.max_text_length = max_text_tokens
    return gpt_trainer.GPTTrainerConfig(
        model_args=args,
        audio=base.audio,
        languages=base.languages,
        batch_size=batch_size,
        eval_batch_size=batch_size,
        optimizer="AdamW",
        optimizer_wd_only_on_weights=True,
        optimizer_params={"betas": list(ADAM_BETAS), "eps": 1e-8, "weight_decay": weight_decay},
        lr=lr,
        training_seed=seed,
        num_loader_workers=0,
        num_eval_loader_workers=0,
    )


def build_trainer(files: TrainingFiles, config: Any) -> Any:
    """Create coqui's ``GPTTrainer`` and load the base weights into its ``Xtts``."""
    trainer = coqui_trainer_module("gpt_trainer").GPTTrainer(config)
    state_dict, _notes, _fmt = read_state_dict(files.model.weights)
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("gpt.gpt_inference.")}
    set_decoder_width(trainer.xtts, decoder_width(state_dict))
    check_state_dict(state_dict, trainer.xtts.state_dict(), files.model.weights)
    trainer.xtts.load_state_dict(state_dict, strict=True)
    return trainer
