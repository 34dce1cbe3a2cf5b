"""The per-worker training loop run by Ray Train's ``TorchTrainer``.

Each worker builds coqui's ``GPTTrainer`` from the base model, applies the method (LoRA or full),
wraps the GPT with Ray's ``prepare_model`` (DDP when there are several workers) and shards the data
with ``prepare_data_loader``. Optimizer steps accumulate ``grad_accum_steps`` micro-batches, clip
gradients and follow a warm-up + cosine schedule. Checkpoints (every ``checkpoint_every_steps``
optimizer steps and at each epoch end) carry the method's weights and the full training state,
each with its eval loss so Ray keeps the best ones; a restarted worker (``FailureConfig``) or a
re-run of the same run name continues from the latest one at the exact step it was written.
Rank 0 also writes ``progress.json``, TensorBoard events and ``samples/epoch_<N>.wav``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from train_jobs.methods import enable_gradient_checkpointing, get_method
from train_jobs.model import build_trainer, coqui_trainer_module, trainer_config
from train_jobs.payload import WorkerPayload
from train_jobs.progress import RunProgress, record_worker
from voice_core.checkpoints import TRAINING_RECORD

STATE_FILE = "training_state.pt"
MIN_LR_FRACTION = 0.1


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to ``MIN_LR_FRACTION``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(module: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups over trainable parameters: decay on weight matrices only (not biases, norms, embeddings)."""
    import torch.nn as nn

    no_decay_types = (nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.BatchNorm1d, nn.InstanceNorm1d)
    decay, no_decay, seen = [], [], set()
    for sub in module.modules():
        for name, parameter in sub.named_parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            plain_weight = name.endswith("weight") and not isinstance(sub, no_decay_types) and parameter.ndim >= 2
            (decay if plain_weight else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _seed_epoch(seed: int, epoch: int, rank: int) -> None:
    import torch

    value = seed * 1_000_003 + epoch * 1_009 + rank
    random.seed(value)  # coqui's XTTSDataset picks clips and conditioning slices with `random`
    torch.manual_seed(value)


class Worker:
    """One Ray Train worker's model, data and optimizer state."""

    def __init__(self, payload: WorkerPayload) -> None:
        import ray.train
        import ray.train.torch
        import torch
        from torch.utils.data import DataLoader

        dataset = coqui_trainer_module("dataset")

        self.config = payload.config
        self.run_dir = payload.run_dir
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        files = payload.files
        cfg = self.config
        self.tconfig = trainer_config(
            files,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            batch_size=cfg.batch_size,
            seed=cfg.seed + self.rank,
            max_text_tokens=cfg.max_text_tokens,
        )
        self.trainer = build_trainer(files, self.tconfig)
        self.method = get_method(cfg.method)
        self.method.prepare(self.trainer.xtts, cfg)
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(self.trainer.xtts)
        self.trainer.to(self.device)
        self.language = payload.language
        self.speaker_wav = payload.speaker_wav
        tokenizer, rate = self.trainer.xtts.tokenizer, self.tconfig.audio.sample_rate
        train_set = dataset.XTTSDataset(self.tconfig, payload.train, tokenizer, rate, is_eval=False)
        eval_set = dataset.XTTSDataset(self.tconfig, payload.eval, tokenizer, rate, is_eval=True)
        loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=False, collate_fn=train_set.collate_fn)
        self.loader = ray.train.torch.prepare_data_loader(loader, move_to_device=False)
        self.eval_loader = DataLoader(eval_set, batch_size=cfg.batch_size, collate_fn=eval_set.collate_fn)
        self.gpt = self.trainer.xtts.gpt
        self.trainer.xtts.gpt = ray.train.torch.prepare_model(
            self.gpt, parallel_strategy_kwargs={"find_unused_parameters": True}
        )
        self.optimizer = torch.optim.AdamW(
            param_groups(self.gpt, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.96), eps=1e-8
        )
        self.batches = len(self.loader)
        self.steps_per_epoch = math.ceil(self.batches / cfg.grad_accum_steps)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup_steps, self.total_steps)
        )
        on_cuda = self.device.type == "cuda"
        self.amp_dtype = None
        if on_cuda and cfg.mixed_precision:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.progress = RunProgress(self.run_dir) if self.rank == 0 else None
        record_worker(self.run_dir, self.rank, os.getpid(), ray.util.get_node_ip_address())
        self.writer = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    # -- state -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def bare_gpt(self) -> Iterator[Any]:
        """The ``Xtts`` with its GPT unwrapped from DDP for the duration (saving, loading, sampling)."""
        wrapped, self.trainer.xtts.gpt = self.trainer.xtts.gpt, self.gpt
        try:
            yield self.trainer.xtts
        finally:
            self.trainer.xtts.gpt = wrapped

    def restore(self, checkpoint: Any) -> None:
        """Continue from a Ray Train checkpoint written by :meth:`report_checkpoint`."""
        import torch

        with checkpoint.as_directory() as directory:
            path = Path(directory)
            with self.bare_gpt() as xtts:
                self.method.load(xtts, path)
            state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        if self.progress is not None:
            self.progress.resumed(self.step, self.epoch)

    def report_checkpoint(self, train_loss: float | None, epoch_end: bool) -> float:
        """Evaluate, write a checkpoint (rank 0 writes the files) and report it to Ray Train."""
        import ray.train
        import torch

        eval_loss = self.evaluate()
        metrics = {
            "step": self.step,
            "epoch": self.epoch,
            "eval_loss": eval_loss,
            "train_loss": train_loss if train_loss is not None else float("nan"),
        }
        name = f"checkpoint_step{self.step:07d}"
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if self.rank == 0:
                directory = Path(tmp)
                with self.bare_gpt() as xtts:
                    self.method.save(xtts, directory, self.config)
                state = {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "step": self.step,
                    "epoch": self.epoch,
                    "batch_in_epoch": self.batch_in_epoch,
                }
                torch.save(state, directory / STATE_FILE)
                meta = {
                    **metrics,
                    "method": self.config.method,
                    "base_model": self.config.base_model,
                    "run_name": self.config.run_name,
                    "epoch_end": epoch_end,
                    "created_at": time.time(),
                }
                (directory / TRAINING_RECORD).write_text(json.dumps(meta, indent=2), encoding="utf-8")
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)
        if self.progress is not None:
            self.progress.checkpoint(self.step, self.epoch, eval_loss, name)
        if self.writer is not None:
            self.writer.add_scalar("eval/loss", eval_loss, self.step)
            self.writer.flush()
        return eval_loss

    # -- work ------------------------------------------------------------------------------------
    def evaluate(self) -> float:
        """Mean loss over the evaluation split (same clips and slices every time)."""
        import torch

        self.trainer.eval()
        total, count = 0.0, 0
        random_state = random.getstate()
        random.seed(self.config.seed)
        with torch.no_grad():
            for batch in self.eval_loader:
                batch = self.trainer.format_batch_on_device(_to_device(batch, self.device))
                batch["cond_idxs"] = None  # as coqui's eval_step: no masking, for comparable numbers
                with self._autocast():
                    _, losses = self.trainer.train_step(batch, None)
                total += float(losses["loss"]) * batch["text_inputs"].shape[0]
                count += batch["text_inputs"].shape[0]
        random.setstate(random_state)
        return total / max(1, count)

    def _autocast(self) -> Any:
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _train_mode(self) -> None:
        self.trainer.eval()  # DVAE, mel extractors and HiFiGAN stay in eval mode (coqui's recipe)
        self.trainer.xtts.gpt.train()

    def run(self) -> None:
        """Train from the current position to the last epoch."""
        cfg = self.config
        if self.progress is not None:
            self.progress.started(self.total_steps, cfg.epochs, self.steps_per_epoch, os.getpid())
        while self.epoch < cfg.epochs:
            sampler = getattr(self.loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
            _seed_epoch(cfg.seed, self.epoch, self.rank)
            self._train_mode()
            losses_sum, micro = 0.0, 0
            last_loss = None
            for index, batch in enumerate(self.loader):
                if index < self.batch_in_epoch:
                    continue  # done before the checkpoint this run resumed from
                batch = self.trainer.format_batch_on_device(_to_device(batch, self.device))
                with self._autocast():
                    _, losses = self.trainer.train_step(batch, None)
                self.scaler.scale(losses["loss"] / cfg.grad_accum_steps).backward()
                losses_sum += float(losses["loss"].detach())
                micro += 1
                self.batch_in_epoch = index + 1
                if self.batch_in_epoch % cfg.grad_accum_steps and self.batch_in_epoch < self.batches:
                    continue
                last_loss = self._optimizer_step(losses_sum / micro, losses)
                losses_sum, micro = 0.0, 0
                end_of_epoch = self.batch_in_epoch >= self.batches
                if cfg.checkpoint_every_steps and self.step % cfg.checkpoint_every_steps == 0 and not end_of_epoch:
                    self.report_checkpoint(last_loss, epoch_end=False)
                    self._train_mode()
            self.epoch += 1
            self.batch_in_epoch = 0
            if self.rank == 0:
                self.write_samples()
            self.report_checkpoint(last_loss, epoch_end=True)
        if self.writer is not None:
            self.writer.close()
        if self.progress is not None:
            self.progress.finished()

    def _optimizer_step(self, loss: float, parts: dict[str, Any]) -> float:
        import torch

        cfg = self.config
        if cfg.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for group in self.optimizer.param_groups for p in group["params"]], cfg.max_grad_norm
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        lr = self.scheduler.get_last_lr()[0]
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, self.step)
            self.writer.add_scalar("train/loss_text_ce", float(parts["loss_text_ce"].detach()), self.step)
            self.writer.add_scalar("train/loss_mel_ce", float(parts["loss_mel_ce"].detach()), self.step)
            self.writer.add_scalar("train/lr", lr, self.step)
        if self.progress is not None:
            self.progress.step(self.step, self.epoch, loss, lr)
        return loss

    def write_samples(self) -> Path:
        """Synthesise the test sentences with the current weights into ``samples/epoch_<N>.wav``."""
        import numpy as np

        from voice_core.encode import write_wav

        self.trainer.config.test_sentences = [
            {"text": text, "speaker_wav": self.speaker_wav, "language": self.language}
            for text in self.config.test_sentences
        ]
        with self.bare_gpt():  # coqui's test_run builds its inference model on the bare GPT
            audios = self.trainer.test_run(None)["audios"]
        rate = int(self.tconfig.model_args.output_sample_rate)
        gap = np.zeros(int(0.3 * rate), dtype=np.float32)
        parts = []
        for key in sorted(audios, key=lambda k: int(k.split("-")[0])):
            parts.extend([np.asarray(audios[key], dtype=np.float32).reshape(-1), gap])
        samples = np.concatenate(parts[:-1]) if parts else np.zeros(1, dtype=np.float32)
        path = self.run_dir / "samples" / f"epoch_{self.epoch}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, samples, rate)
        if self.writer is not None:
            self.writer.add_audio("samples", samples.reshape(1, -1), self.step, sample_rate=rate)
        if self.progress is not None:
            self.progress.sample(self.epoch, path)
        return path


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point: rebuild the payload, build the worker, restore the latest checkpoint if any, train.

    Args:
        loop_config: a :class:`WorkerPayload` in its JSON form (``WorkerPayload.loop_config``).
    """
    import ray.train

    worker = Worker(WorkerPayload.from_loop_config(loop_config))
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        worker.restore(checkpoint)
    worker.run()
