"""Typed options end to end: one ``FinetuneConfig`` from flags or ``--config``, described in ``--help``,
handed to the workers as one validated payload."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from tests.train_jobs.conftest import small_config
from train_jobs.cli import _finetune_config, parser
from train_jobs.config import FinetuneConfig, write_config_file
from train_jobs.payload import WorkerPayload
from train_jobs.runner import prepare_run
from voice_core.settings import Settings

# Every field away from its default, values with commas and leading dashes included.
NON_DEFAULT: dict[str, object] = {
    "dataset": "speaker",
    "base_model": "tiny-xtts",
    "method": "full",
    "run_name": "all-options",
    "language": "en",
    "epochs": 3,
    "batch_size": 2,
    "grad_accum_steps": 2,
    "lr": 1e-4,
    "weight_decay": 0.05,
    "warmup_steps": 4,
    "max_grad_norm": 0.5,
    "mixed_precision": False,
    "checkpoint_every_steps": 7,
    "keep_checkpoints": 2,
    "lora_rank": 4,
    "lora_alpha": 8,
    "lora_dropout": 0.1,
    "lora_targets": ("c_attn", "c_fc"),
    "test_sentences": ("One sentence.", "Another one."),
    "min_audio_s": 1.0,
    "max_text_tokens": 100,
    "seed": 5,
    "num_workers": 2,
    "use_gpu": True,
    "cpus_per_worker": 2.0,
    "gpus_per_worker": 0.5,
    "max_failures": 3,
    "gradient_checkpointing": True,
    "progress_bar": False,
}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    root = parser()
    commands = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return {"(root)": root, **commands.choices}


def _bare(help_text: str) -> str:
    """The help text without what argparse or the generator add: defaults, 'required', list hints."""
    text = re.sub(r"\((default: [^)]*|required[^)]*)\)", "", help_text)
    text = text.replace("; comma-separated values are searched", "").replace("; comma-separated", "")
    return text.strip(" ;")


@pytest.mark.parametrize("command", ["(root)", "finetune", "search", "export", "checkpoints"])
def test_every_option_has_help_beyond_its_default(command: str) -> None:
    subcommand = _subcommands()[command]
    options = [a for a in subcommand._actions if a.option_strings and a.dest != "help"]
    assert options
    bare = {a.option_strings[0]: _bare(a.help or "") for a in options}
    assert [flag for flag, text in bare.items() if len(text) < 5] == []


def test_every_config_field_has_a_description() -> None:
    assert [name for name, field in FinetuneConfig.model_fields.items() if not field.description] == []


def _flags(values: dict[str, object]) -> list[str]:
    argv = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            argv += [flag, ",".join(value)]
        else:
            argv += [flag, str(value)]
    return argv


def test_flags_and_config_file_give_the_same_config(tmp_path: Path) -> None:
    expected = FinetuneConfig(**NON_DEFAULT)
    assert all(getattr(expected, k) != f.default for k, f in FinetuneConfig.model_fields.items() if not f.is_required())
    from_flags = _finetune_config(parser().parse_args(["finetune", *_flags(NON_DEFAULT)]))
    path = write_config_file(expected, tmp_path / "options.json")
    from_file = _finetune_config(parser().parse_args(["finetune", "--config", str(path)]))
    assert from_flags == from_file == expected
    minimal = {k: NON_DEFAULT[k] for k in ("dataset", "base_model", "run_name")}
    (tmp_path / "minimal.json").write_text(json.dumps(minimal), encoding="utf-8")
    from_file = _finetune_config(parser().parse_args(["finetune", "--config", str(tmp_path / "minimal.json")]))
    assert _finetune_config(parser().parse_args(["finetune", *_flags(minimal)])) == from_file


def test_worker_payload_round_trips_through_its_json_form(train_settings: Settings) -> None:
    payload = prepare_run(small_config(), train_settings).payload
    carried = json.loads(json.dumps(payload.loop_config()))  # what Ray Train hands each worker
    rebuilt = WorkerPayload.from_loop_config(carried)
    assert rebuilt == payload
    assert rebuilt.config == small_config() and rebuilt.files.model.vocab.is_file()
    assert rebuilt.train and rebuilt.eval and rebuilt.language == "en"


def test_worker_payload_rejects_unknown_keys(train_settings: Settings) -> None:
    carried = prepare_run(small_config(), train_settings).payload.loop_config()
    with pytest.raises(ValueError, match="colour"):
        WorkerPayload.from_loop_config({**carried, "colour": "blue"})
