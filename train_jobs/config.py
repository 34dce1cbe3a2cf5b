"""Options of a fine-tuning run: one pydantic model, checked before any compute starts.

The options split in two: those that define *what* is learned (method, learning rate, LoRA shape,
epochs, ...) make up the run's identity, saved as ``run.json`` in the run directory; re-running a
run name with a different identity is refused, with the differing fields named. Resources (workers,
GPUs, CPUs per worker) are not part of the identity, so a run may resume on another cluster shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voice_core.adapters import DEFAULT_TARGET_MODULES
from voice_core.errors import InvalidInputError
from voice_core.storage import atomic_write_json, validate_component

MethodName = Literal["lora", "full"]
DEFAULT_TEST_SENTENCES: tuple[str, ...] = ("This is a test of my fine-tuned voice.",)
# Fields that may change between two launches of one run name.
RESOURCE_FIELDS: frozenset[str] = frozenset(
    {
        "num_workers",
        "use_gpu",
        "cpus_per_worker",
        "gpus_per_worker",
        "max_failures",
        "progress_bar",
        "gradient_checkpointing",
    }
)


class FinetuneConfig(BaseModel):
    """Everything a fine-tuning run needs; unknown keys are rejected.

    Each field's ``description`` documents it (and is the ``--help`` text of the CLI flags).
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(
        description="an LJSpeech dataset directory (metadata_train.csv/metadata_eval.csv or metadata.csv, "
        "wavs/), or a dataset name under storage/datasets"
    )
    base_model: str = Field(description="the model id to fine-tune (a directory under storage/models)")
    method: MethodName = Field(
        default="lora", description="lora (peft adapter on the GPT blocks) or full (the whole GPT trains)"
    )
    run_name: str = Field(description="the run directory under storage/runs; the same name resumes")
    language: str | None = Field(
        default=None, description="the dataset language; unset reads it from the dataset's manifest.json"
    )
    epochs: int = Field(default=10, ge=1, le=10_000, description="passes over the training split")
    batch_size: int = Field(default=4, ge=1, le=512, description="clips per step per worker")
    grad_accum_steps: int = Field(default=1, ge=1, le=1024, description="micro-batches per optimizer step")
    lr: float = Field(
        default=5e-6,
        gt=0,
        le=1.0,
        description="peak learning rate (AdamW, betas 0.9/0.96, weight decay on weights only)",
    )
    weight_decay: float = Field(
        default=1e-2, ge=0, le=1.0, description="AdamW weight decay of weight matrices (not biases, norms, embeddings)"
    )
    warmup_steps: int = Field(
        default=0, ge=0, description="optimizer steps of linear warm-up before the cosine decay to a tenth of lr"
    )
    max_grad_norm: float = Field(default=1.0, ge=0, description="gradient clipping norm (0 disables clipping)")
    mixed_precision: bool = Field(
        default=True,
        description="use autocast (bf16 when supported, else fp16 with a grad scaler) on CUDA; ignored on CPU",
    )
    checkpoint_every_steps: int = Field(
        default=500, ge=0, description="optimizer steps between checkpoints, besides one at each epoch end (0: none)"
    )
    keep_checkpoints: int = Field(
        default=3, ge=1, le=1000, description="checkpoints kept, by lowest eval loss (the latest is always kept too)"
    )
    lora_rank: int = Field(default=8, ge=1, le=1024, description="LoRA rank")
    lora_alpha: int = Field(default=16, ge=1, le=4096, description="LoRA alpha (scaling = alpha / rank)")
    lora_dropout: float = Field(default=0.0, ge=0, lt=1.0, description="LoRA dropout")
    lora_targets: tuple[str, ...] = Field(default=DEFAULT_TARGET_MODULES, description="GPT-2 module names LoRA wraps")
    test_sentences: tuple[str, ...] = Field(
        default=DEFAULT_TEST_SENTENCES, description="synthesised into samples/epoch_<N>.wav after every epoch"
    )
    min_audio_s: float = Field(default=120.0, ge=0, description="the least total training audio accepted (seconds)")
    max_text_tokens: int = Field(
        default=200,
        ge=8,
        le=402,
        description="longest transcript in tokens the GPT is trained on (the XTTS recipe: 200)",
    )
    seed: int = Field(default=1, description="seeds sampling of clips and conditioning slices")
    num_workers: int = Field(default=1, ge=1, le=1024, description="Ray Train workers (DDP when more than one)")
    use_gpu: bool = Field(default=False, description="give each worker GPUs (gpus_per_worker of them)")
    cpus_per_worker: float = Field(default=1.0, gt=0, description="CPUs reserved by each worker")
    gpus_per_worker: float = Field(default=1.0, gt=0, description="GPUs per worker when use_gpu is set")
    max_failures: int = Field(
        default=1,
        ge=-1,
        description="worker failures the run recovers from (from the latest checkpoint); -1 retries without end",
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="recompute the GPT blocks' activations in the backward pass (less memory, about a third "
        "more compute; same losses and gradients)",
    )
    progress_bar: bool = Field(default=True, description="draw a progress bar on the driver's terminal")

    @field_validator("run_name")
    @classmethod
    def _safe_run_name(cls, value: str) -> str:
        try:
            return validate_component(value, "run name")
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("lora_targets is empty; name GPT-2 modules such as c_attn, c_proj, c_fc")
        return value

    @field_validator("test_sentences")
    @classmethod
    def _sentences(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(s.strip() for s in value if s.strip())
        if not cleaned:
            raise ValueError("test_sentences is empty; give at least one sentence to synthesise each epoch")
        return cleaned

    def identity(self) -> dict[str, Any]:
        """The options that define what the run learns (saved in ``run.json``)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in RESOURCE_FIELDS}

    def differences(self, saved: dict[str, Any]) -> list[str]:
        """Identity fields whose value differs from a saved identity, as ``field: saved -> new``."""
        mine = self.identity()
        keys = sorted(set(mine) | set(saved))
        return [f"{k}: {saved.get(k)!r} -> {mine.get(k)!r}" for k in keys if mine.get(k) != saved.get(k)]


def parse_config(values: dict[str, Any]) -> FinetuneConfig:
    """Build a :class:`FinetuneConfig`, turning pydantic's errors into one readable ``InvalidInputError``."""
    from pydantic import ValidationError

    try:
        return FinetuneConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid training options: {problems}") from None


def write_config_file(config: FinetuneConfig, path: Path) -> Path:
    """Save ``config`` as a JSON object of its fields (lists as arrays), atomically; returns ``path``.

    This is how options cross a process boundary (``python -m train_jobs finetune --config FILE``):
    the validated object as JSON, never re-rendered as command-line text.
    """
    atomic_write_json(path, config.model_dump(mode="json"))
    return path


def read_config_file(path: Path) -> FinetuneConfig:
    """Load a config written by :func:`write_config_file` (or by hand), validated like any other.

    Raises:
        InvalidInputError: the file is unreadable, not a JSON object, or has invalid or unknown fields.
    """
    from voice_core.storage import read_options_file

    values = read_options_file(path)
    return parse_config(values)
