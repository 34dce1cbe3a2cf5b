"""Training step: one optimizer step of the release-size XTTS GPT, LoRA against full fine-tuning.

The GPT is coqui's ``GPT`` module with the XTTS-v2 release dimensions (30 layers, 1024 channels,
16 heads, 6681 text tokens, perceiver resampler) and random weights, on the CPU, batch 1. The
method is applied by ``train_jobs.methods.get_method(name).prepare`` exactly as training does
(``FinetuneConfig`` defaults: LoRA rank 8, alpha 16 on ``c_attn``/``c_proj``/``c_fc``), the
optimizer is AdamW over ``train_jobs.loop.param_groups`` and the loss is coqui's
``GPTTrainer.train_step`` loss (0.01 x text CE + mel CE), followed by backward, gradient clipping
at 1.0, ``optimizer.step()`` and ``zero_grad``.

The synthetic batch stands for one real clip: 100 text tokens, ~11 s of 22.05 kHz audio (242,550
samples, 236 audio codes) and a 6 s conditioning mel with ``cond_idxs`` (the masking approach of
training). Each method runs in its own fresh Python process, so its peak RSS
(``getrusage().ru_maxrss``) belongs to that method alone. Target (issue 5): LoRA's peak memory at
most 50% of full's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import REPO_ROOT, Result, Table, cli
from train_jobs.model import ADAM_BETAS, MAX_CONDITIONING_SAMPLES

NAME = "training_step"
METHODS = ("lora", "full")
# Variants measured: each method without and with gradient checkpointing (train_jobs' --gradient-checkpointing).
VARIANTS: tuple[tuple[str, bool], ...] = (("lora", False), ("full", False), ("lora", True), ("full", True))
TARGET_PEAK_RATIO = 0.5
SEED = 0
SAMPLE_RATE = 22050
MEL_HOP = 256
TEXT_TOKENS = 100
WAV_SAMPLES = 242_550  # ~11 s at 22.05 kHz
# XttsArgs of the released XTTS-v2 (start/stop text tokens are the tokenizer's [START]=261, [STOP]=0).
RELEASE_GPT = {
    "layers": 30,
    "model_dim": 1024,
    "heads": 16,
    "start_text_token": 261,
    "stop_text_token": 0,
    "max_text_tokens": 402,
    "max_mel_tokens": 605,
    "max_prompt_tokens": 70,
    "number_text_tokens": 6681,
    "num_audio_tokens": 1026,
    "start_audio_token": 1024,
    "stop_audio_token": 1025,
    "use_perceiver_resampler": True,
    "code_stride_len": 1024,
}
QUICK_GPT = {**RELEASE_GPT, "layers": 2, "model_dim": 256, "heads": 4}
TIMED_STEPS = {False: 2, True: 1}  # after one warm-up; a release-size step takes 20-60 s on 2 busy cores
MIB = 1024 * 1024


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _batch(dims: dict[str, Any]) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(SEED)
    cond_samples = MAX_CONDITIONING_SAMPLES  # the dataset pads every conditioning slice to this length
    # The slice is the clip's last 6 s. GPT.forward rescales cond_idxs to mel frames and then sets
    # mel_targets[start:end] = -1 with them; a slice starting at 0 would ignore every target (NaN loss).
    cond_start = WAV_SAMPLES - cond_samples
    return {
        "text_inputs": torch.randint(2, 6000, (1, TEXT_TOKENS), generator=generator),
        "text_lengths": torch.tensor([TEXT_TOKENS]),
        "audio_codes": torch.randint(0, 1024, (1, WAV_SAMPLES // dims["code_stride_len"]), generator=generator),
        "wav_lengths": torch.tensor([WAV_SAMPLES]),
        "cond_mels": torch.randn(1, 1, 80, cond_samples // MEL_HOP, generator=generator),
        "cond_idxs": torch.tensor([[cond_start, WAV_SAMPLES]]),  # sample offsets of the conditioning slice
    }


def variant_name(method: str, checkpointing: bool) -> str:
    """``lora``, ``full``, ``lora+gc``, ``full+gc``."""
    return f"{method}+gc" if checkpointing else method


def measure(method: str, quick: bool, steps: int, checkpointing: bool = False) -> dict[str, Any]:
    """Build the GPT, apply ``method``, run one warm-up and ``steps`` timed training steps in this process.

    Returns:
        Parameter counts, RSS (bytes) after the build and at peak, per-step seconds and losses.
    """
    import torch
    import torch.nn as nn
    from TTS.tts.layers.xtts.gpt import GPT

    from train_jobs.config import FinetuneConfig
    from train_jobs.loop import param_groups
    from train_jobs.methods import enable_gradient_checkpointing, get_method, trainable_parameters

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(SEED)
    rss_imported = _rss_bytes()
    dims = QUICK_GPT if quick else RELEASE_GPT
    config = FinetuneConfig(dataset="x", base_model="x", run_name="bench", method=method)

    class Holder(nn.Module):  # what methods.prepare expects of an ``Xtts``: a ``.gpt``
        def __init__(self) -> None:
            super().__init__()
            self.gpt = GPT(**dims)

    holder = Holder()
    get_method(method).prepare(holder, config)
    if checkpointing:
        enable_gradient_checkpointing(holder)
    gpt = holder.gpt
    optimizer = torch.optim.AdamW(param_groups(gpt, config.weight_decay), lr=config.lr, betas=ADAM_BETAS, eps=1e-8)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    gpt.train()
    batch = _batch(dims)
    rss_before, peak_before = _rss_bytes(), _peak_rss_bytes()

    def step() -> tuple[float, float, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
        loss_text, loss_mel, _ = gpt(
            batch["text_inputs"],
            batch["text_lengths"],
            batch["audio_codes"],
            batch["wav_lengths"],
            cond_mels=batch["cond_mels"],
            cond_idxs=batch["cond_idxs"].clone(),  # the forward rescales it in place
            cond_lens=None,
        )
        loss = 0.01 * loss_text + loss_mel  # GPTTrainer.train_step's default CE weights
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start, time.process_time() - cpu_start, float(loss.detach())

    warmup_s, _, first_loss = step()
    timed = [step() for _ in range(steps)]
    return {
        "method": method,
        "gradient_checkpointing": checkpointing,
        "gpt": {k: dims[k] for k in ("layers", "model_dim", "heads")},
        "trainable_params": trainable_parameters(holder),
        "total_params": sum(p.numel() for p in holder.parameters()),
        "rss_imported_bytes": rss_imported,
        "rss_before_step_bytes": rss_before,
        "peak_rss_before_step_bytes": peak_before,
        "peak_rss_bytes": _peak_rss_bytes(),
        "rss_after_steps_bytes": _rss_bytes(),
        "warmup_step_s": round(warmup_s, 3),
        "step_s": [round(seconds, 3) for seconds, _, _ in timed],
        "step_cpu_s": [round(cpu, 3) for _, cpu, _ in timed],
        "losses": [round(first_loss, 4)] + [round(loss, 4) for _, _, loss in timed],
        "threads": torch.get_num_threads(),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
    }


def _run_worker(method: str, checkpointing: bool, quick: bool, steps: int, work: Path) -> dict[str, Any]:
    path = work / f"{variant_name(method, checkpointing)}.json"
    command = [sys.executable, "-m", f"benchmarks.{NAME}", "--worker", method, "--steps", str(steps),
               "--result", str(path), *(["--quick"] if quick else []),
               *(["--gradient-checkpointing"] if checkpointing else [])]  # fmt: skip
    load = round(os.getloadavg()[0], 2)
    done = subprocess.run(command, cwd=REPO_ROOT, check=False)
    if done.returncode or not path.is_file():
        raise RuntimeError(
            f"{variant_name(method, checkpointing)} worker failed (exit code {done.returncode}); see its output above"
        )
    return {**json.loads(path.read_text(encoding="utf-8")), "load_avg_1m_start": load}


def _mib(value: float) -> str:
    return f"{value / MIB:,.0f}"


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    """Measure LoRA and full steps, without and with gradient checkpointing, each in a fresh process.

    Writes ``<out_dir>/training_step.json``.
    """
    steps = TIMED_STEPS[quick]
    dims = QUICK_GPT if quick else RELEASE_GPT
    result = Result(
        NAME,
        quick,
        config={
            "gpt": dims,
            "batch": {"size": 1, "text_tokens": TEXT_TOKENS, "wav_samples": WAV_SAMPLES,
                      "audio_codes": WAV_SAMPLES // dims["code_stride_len"], "cond_samples": MAX_CONDITIONING_SAMPLES},
            "warmup_steps": 1,
            "timed_steps": steps,
            "seed": SEED,
            "device": "cpu",
            "threads": os.cpu_count(),
        },
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="avs-training-step-") as tmp:
        measured = {
            variant_name(method, gc): _run_worker(method, gc, quick, steps, Path(tmp)) for method, gc in VARIANTS
        }
    for data in measured.values():
        data["step_s_p50"] = statistics.median(data["step_s"])
        data["step_cpu_s_p50"] = statistics.median(data["step_cpu_s"])
        data["step_increase_bytes"] = data["peak_rss_bytes"] - data["rss_before_step_bytes"]
    result.metrics["methods"] = measured

    gpt = dims
    table = Table(
        f"One training step, XTTS GPT {gpt['layers']} layers x {gpt['model_dim']} channels x {gpt['heads']} heads "
        f"({'quick: reduced size' if quick else 'release size'}), CPU, batch 1",
        ["method", "trainable params", "total params", "RSS before step MiB", "peak RSS MiB", "step increase MiB",
         "step s (p50)", "step CPU s (p50)", "warm-up s", "load avg"],
    )  # fmt: skip
    for method, data in measured.items():
        table.add(
            method,
            f"{data['trainable_params']:,}",
            f"{data['total_params']:,}",
            _mib(data["rss_before_step_bytes"]),
            _mib(data["peak_rss_bytes"]),
            _mib(data["step_increase_bytes"]),
            f"{data['step_s_p50']:.2f}",
            f"{data['step_cpu_s_p50']:.2f}",
            f"{data['warmup_step_s']:.2f}",
            f"{data['load_avg_1m_start']:g}",
        )
    ratio_table = Table(
        "LoRA relative to full (same checkpointing setting on both)",
        ["gradient checkpointing", "peak RSS", "peak above imports", "step increase", "step time (p50)",
         "step CPU time (p50)", "target", "result"],
    )  # fmt: skip
    result.metrics["lora_over_full"] = {}
    for suffix, label in (("", "off"), ("+gc", "on")):
        lora, full = measured["lora" + suffix], measured["full" + suffix]
        ratios = {
            "peak_rss": lora["peak_rss_bytes"] / full["peak_rss_bytes"],
            "peak_above_imports": (lora["peak_rss_bytes"] - lora["rss_imported_bytes"])
            / (full["peak_rss_bytes"] - full["rss_imported_bytes"]),
            "step_increase": lora["step_increase_bytes"] / full["step_increase_bytes"],
            "step_time_p50": lora["step_s_p50"] / full["step_s_p50"],
            "step_cpu_time_p50": lora["step_cpu_s_p50"] / full["step_cpu_s_p50"],
            "trainable_params": lora["trainable_params"] / full["trainable_params"],
        }
        result.metrics["lora_over_full"][f"checkpointing_{label}"] = {k: round(v, 4) for k, v in ratios.items()}
        check = result.check(f"LoRA / full peak RSS, gradient checkpointing {label}", ratios["peak_rss"],
                             TARGET_PEAK_RATIO, "", at_most=True, source="issue 5")  # fmt: skip
        ratio_table.add(
            label,
            f"{ratios['peak_rss']:.3f}",
            f"{ratios['peak_above_imports']:.3f}",
            f"{ratios['step_increase']:.3f}",
            f"{ratios['step_time_p50']:.3f}",
            f"{ratios['step_cpu_time_p50']:.3f}",
            f"peak RSS ≤ {TARGET_PEAK_RATIO:g}",
            "PASS" if check["passed"] else "FAIL",
        )
    full = measured["full"]
    result.tables += [table, ratio_table]
    result.notes += [
        f"Each method ran in its own process: build the GPT, apply the method, then 1 warm-up step (it also "
        f"allocates AdamW's state) and {steps} timed step(s); step time is their median.",
        "RSS before step is taken after the model, method and optimizer are built; peak RSS is the process's "
        "ru_maxrss, so it includes the Python, torch and TTS imports "
        f"(~{_mib(full['rss_imported_bytes'])} MiB here) for both methods; step increase = peak - RSS before step.",
        "Full keeps weights, gradients and two AdamW moments for every GPT parameter (~4 x 4 bytes each); LoRA "
        "keeps them only for the adapter, but its backward still runs through every frozen layer, which is why "
        "its step time falls much less than its memory.",
        "Both methods keep the activations autograd saves for the backward (GELU intermediates and attention "
        "probabilities of every layer), which LoRA does not shrink: they grow with batch size and sequence length "
        "while the frozen weights do not, so LoRA's share of full's peak grows with the batch (training's default "
        "batch_size is 4).",
        "Gradient checkpointing (train_jobs --gradient-checkpointing) recomputes each GPT-2 block's activations "
        "in the backward pass instead of keeping them: the activations stop dominating, so LoRA's share of "
        "full's peak falls, at the cost of about one more forward pass per step. Losses and gradients are the "
        "same either way (tests/train_jobs/test_step.py).",
        "Random weights: the losses are ~ln(vocabulary) and say nothing about quality; memory and time do not "
        "depend on the weights' values.",
        "The machine is shared: compare the load averages (the 1-minute average when each method's process "
        "started). Step CPU time (user + system of the process, all threads) is less sensitive to other work "
        "than wall time.",
    ]
    if quick:
        result.notes.append(
            f"Quick run: a reduced GPT ({gpt['layers']} layers, {gpt['model_dim']} channels, {gpt['heads']} heads); "
            "imports dominate its RSS, so its ratios say nothing about the release-size model."
        )
    return result.finish(out_dir)


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME} --worker")
    parser.add_argument("--worker", choices=METHODS, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args(argv)
    data = measure(args.worker, args.quick, args.steps, args.gradient_checkpointing)
    args.result.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        raise SystemExit(_worker_main(sys.argv[1:]))
    raise SystemExit(cli(NAME, run))
