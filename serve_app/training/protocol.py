"""Request models of training runs (``POST /training/jobs``)."""

from __future__ import annotations

from pydantic import Field

from serve_app.protocol import LanguageCode
from train_jobs.config import FinetuneConfig
from voice_core.storage import COMPONENT_PATTERN


class TrainingRequest(FinetuneConfig):
    """``POST /training/jobs`` body: the options of ``python -m train_jobs finetune`` as JSON.

    ``dataset`` is the name of a dataset under ``storage/datasets`` (never a path); ``progress_bar`` is ignored.
    """

    dataset: str = Field(
        min_length=1,
        max_length=128,
        pattern=COMPONENT_PATTERN,
        description="A dataset name under storage/datasets (GET /datasets).",
    )
    base_model: str = Field(min_length=1, max_length=128, pattern=COMPONENT_PATTERN, description="Model id to tune.")
    run_name: str = Field(min_length=1, max_length=128, pattern=COMPONENT_PATTERN, description="Run name.")
    language: LanguageCode | None = None
