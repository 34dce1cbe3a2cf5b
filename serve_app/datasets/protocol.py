"""Request models of dataset builds (``POST /datasets``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_app.datasets.service import BuildOptions
from voice_core.settings import Settings
from voice_core.storage import COMPONENT_PATTERN


class DatasetRequest(BaseModel):
    """``POST /datasets``: JSON naming a ``source`` folder, or a multipart form with ``files``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=COMPONENT_PATTERN,
        description="Dataset name: its folder under storage/datasets/.",
    )
    language: Literal["en", "pt", "auto"] = Field(description="Language spoken in the recordings.")
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=COMPONENT_PATTERN,
        description="JSON only: a folder under storage/recordings/ holding the recordings.",
    )
    whisper_model: Literal["tiny.en", "base"] | None = Field(
        default=None, description="Transcriber; default AVS_DATASET_WHISPER_MODEL, else tiny.en (en) or base."
    )
    min_clip_s: float | None = Field(default=None, gt=0, le=11.6, description="Shortest clip kept, seconds.")
    max_clip_s: float | None = Field(default=None, gt=0, le=11.6, description="Longest clip, seconds (XTTS: 11.6).")

    def options(self, settings: Settings) -> BuildOptions:
        """The effective build options (defaults filled in)."""
        model = self.whisper_model or settings.dataset_whisper_model or ("tiny.en" if self.language == "en" else "base")
        values: dict[str, Any] = {"language": self.language, "whisper_model": model}
        if self.min_clip_s is not None:
            values["min_clip_s"] = self.min_clip_s
        if self.max_clip_s is not None:
            values["max_clip_s"] = self.max_clip_s
        return BuildOptions(**values)
