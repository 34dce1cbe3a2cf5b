"""Request models of synthesis jobs (``POST /jobs``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serve_app.protocol import LanguageCode, ModelId, ResponseFormat, VoiceName
from serve_app.speech.profiles import ProfileName


class JobRequest(BaseModel):
    """``POST /jobs`` body (JSON, or the same fields as a multipart form with an ``srt`` file)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, description="Text to speak; long text is split into units.")
    srt: str | None = Field(default=None, description="SubRip subtitles; each cue is spoken in its time slot.")
    voice: VoiceName | None = None
    language: LanguageCode | None = None
    quality_profile: ProfileName = "balanced"
    model: ModelId | None = None
    allow_fallback: bool = False
    format: ResponseFormat = "wav"
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
