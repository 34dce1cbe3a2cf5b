"""Request models of saved voices (``POST /voices``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serve_app.protocol import VOICE_PATTERN, LanguageCode


class CreateVoice(BaseModel):
    """Form fields of ``POST /voices`` (files go in ``files``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=VOICE_PATTERN)
    language: LanguageCode = "en"
