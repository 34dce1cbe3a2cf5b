"""Importing coqui's XTTS trainer keeps the worker's torch thread count.

Coqui's ``TTS.tts.layers.xtts.trainer.dataset`` calls ``torch.set_num_threads(1)`` at import, so a training
worker given several CPUs would train on one. Import side effects happen once per process, so each case
runs in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _threads_after(import_line: str) -> int:
    code = f"import torch\ntorch.set_num_threads(3)\n{import_line}\nprint(torch.get_num_threads())"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


def test_coquis_trainer_import_drops_torch_to_one_thread() -> None:
    # Why train_jobs imports it through coqui_trainer_module.
    assert _threads_after("import TTS.tts.layers.xtts.trainer.gpt_trainer") == 1


def test_coqui_trainer_module_keeps_the_thread_count() -> None:
    line = "from train_jobs.model import coqui_trainer_module; coqui_trainer_module('gpt_trainer')"
    assert _threads_after(line) == 3
