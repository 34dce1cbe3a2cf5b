"""The training step itself, without Ray: coqui's GPTTrainer on the tiny model really learns.

One fixed batch is trained on repeatedly: its loss must drop clearly. In LoRA mode only the adapter
matrices may change; every base weight must stay bit-identical.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from tests.train_jobs.conftest import small_config
from train_jobs.loop import lr_factor, param_groups
from train_jobs.methods import get_method, trainable_parameters
from train_jobs.model import build_trainer, coqui_trainer_module, trainer_config, training_files
from train_jobs.runner import prepare_run
from voice_core.settings import Settings
from voice_core.storage import Storage


def _trainer_and_batch(settings: Settings, method: str) -> tuple[object, dict]:
    from torch.utils.data import DataLoader

    config = small_config(method=method, lora_rank=8, lora_alpha=16)
    prepared = prepare_run(config, settings)
    storage = Storage.from_settings(settings)
    files = training_files(storage.model_dir("tiny-xtts"), storage)
    tconfig = trainer_config(files, lr=config.lr, weight_decay=0.01, batch_size=4, seed=1, max_text_tokens=200)
    torch.manual_seed(0)
    random.seed(0)
    trainer = build_trainer(files, tconfig)
    get_method(method).prepare(trainer.xtts, config)
    data = coqui_trainer_module("dataset").XTTSDataset(
        tconfig, prepared.payload.train, trainer.xtts.tokenizer, 22050, is_eval=True
    )
    batch = next(iter(DataLoader(data, batch_size=4, collate_fn=data.collate_fn)))
    trainer.eval()
    trainer.xtts.gpt.train()
    return trainer, trainer.format_batch_on_device(batch)


def _train_repeatedly(trainer: object, batch: dict, steps: int, lr: float) -> list[float]:
    optimizer = torch.optim.AdamW(param_groups(trainer.xtts.gpt, 0.01), lr=lr, betas=(0.9, 0.96))
    losses = []
    for _ in range(steps):
        torch.manual_seed(0)
        _, parts = trainer.train_step(dict(batch), None)
        parts["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(parts["loss"].detach()))
    return losses


@pytest.mark.parametrize("method", ["full", "lora"])
def test_loss_on_a_repeated_batch_drops(train_settings: Settings, method: str) -> None:
    trainer, batch = _trainer_and_batch(train_settings, method)
    losses = _train_repeatedly(trainer, batch, steps=25, lr=3e-3)
    assert losses[-1] < 0.6 * losses[0], losses  # e.g. 6.9 -> well under 4


def test_lora_changes_only_adapter_weights(train_settings: Settings) -> None:
    trainer, batch = _trainer_and_batch(train_settings, "lora")
    before = {k: v.detach().clone() for k, v in trainer.xtts.state_dict().items()}
    trainable = {n for n, p in trainer.xtts.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert trainable_parameters(trainer.xtts) < 0.2 * sum(p.numel() for p in trainer.xtts.parameters())
    _train_repeatedly(trainer, batch, steps=3, lr=1e-2)
    after = trainer.xtts.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "nothing trained"
    assert all("lora_" in k for k in changed), sorted(k for k in changed if "lora_" not in k)[:5]
    assert any("lora_B" in k for k in changed)


def test_full_freezes_the_decoder(train_settings: Settings) -> None:
    trainer, _ = _trainer_and_batch(train_settings, "full")
    trainable = {n for n, p in trainer.xtts.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("gpt.") for name in trainable)
    assert not any(p.requires_grad for p in trainer.xtts.hifigan_decoder.parameters())


def test_weight_decay_only_on_weight_matrices(train_settings: Settings) -> None:
    trainer, _ = _trainer_and_batch(train_settings, "full")
    decay, no_decay = param_groups(trainer.xtts.gpt, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    embedding = trainer.xtts.gpt.text_embedding.weight
    assert any(p is embedding for p in no_decay["params"]) and not any(p is embedding for p in decay["params"])
    total = len({id(p) for p in trainer.xtts.gpt.parameters() if p.requires_grad})
    assert len(decay["params"]) + len(no_decay["params"]) == total  # each parameter exactly once


def test_lr_schedule_warms_up_then_decays() -> None:
    factors = [lr_factor(step, warmup=4, total=20) for step in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in itertools.pairwise(factors[3:]))
    assert factors[-1] < 0.2 and min(factors) >= 0.1


@pytest.mark.parametrize("method", ["full", "lora"])
def test_gradient_checkpointing_keeps_losses_and_gradients(train_settings: Settings, method: str) -> None:
    from train_jobs.methods import enable_gradient_checkpointing

    results = []
    for checkpointing in (False, True):
        trainer, batch = _trainer_and_batch(train_settings, method)
        if checkpointing:
            enable_gradient_checkpointing(trainer.xtts)
            transformer = trainer.xtts.gpt.gpt
            base = transformer.get_base_model() if method == "lora" else transformer
            assert base.gradient_checkpointing
        torch.manual_seed(0)
        _, parts = trainer.train_step(dict(batch), None)
        parts["loss"].backward()
        grads = [p.grad.clone() for p in trainer.xtts.parameters() if p.requires_grad]
        results.append((float(parts["loss"].detach()), grads))
    (loss_off, grads_off), (loss_on, grads_on) = results
    assert loss_on == pytest.approx(loss_off, rel=1e-6)
    assert len(grads_on) == len(grads_off) and all(
        torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_off, grads_on, strict=True)
    )
