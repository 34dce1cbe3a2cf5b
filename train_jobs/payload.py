"""What the driver hands each Ray Train worker: the checked options and everything it resolved.

:func:`train_jobs.runner.prepare_run` builds a :class:`WorkerPayload`; it crosses to the workers as
Ray Train's ``train_loop_config`` in its JSON form (:meth:`WorkerPayload.loop_config`) and is rebuilt,
validated, at the top of the worker (:meth:`WorkerPayload.from_loop_config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from train_jobs.config import FinetuneConfig
from train_jobs.model import TrainingFiles


class WorkerPayload(BaseModel):
    """The per-worker input of a run; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: FinetuneConfig = Field(description="the run's checked options")
    run_dir: Path = Field(description="the run directory (progress, TensorBoard, samples)")
    files: TrainingFiles = Field(description="the base model's files, DVAE and mel statistics")
    language: str = Field(description="the dataset language")
    speaker_wav: str = Field(description="the reference clip the epoch samples are spoken with")
    train: list[dict[str, str]] = Field(description="training clips as coqui's XTTSDataset reads them")
    eval: list[dict[str, str]] = Field(description="evaluation clips as coqui's XTTSDataset reads them")
    base_model_id: str = Field(description="the id of the model being fine-tuned")

    def loop_config(self) -> dict[str, Any]:
        """The JSON-ready form Ray Train carries to the workers as ``train_loop_config``."""
        return self.model_dump(mode="json")

    @classmethod
    def from_loop_config(cls, values: dict[str, Any]) -> WorkerPayload:
        """Rebuild the payload from :meth:`loop_config`'s form (validated like any other input)."""
        return cls.model_validate(values)
