"""Speech request and result models: pydantic at the HTTP boundary, dataclasses between deployments."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve_app.protocol import LanguageCode, ModelId, ResponseFormat, VoiceName
from serve_app.speech.profiles import MIN_TEMPERATURE, ProfileName

MAX_INPUT_CHARS = 4096


# OpenAI model names accepted on /v1/audio/speech; they select the service's default model.
OPENAI_MODEL_ALIASES: dict[str, str | None] = {"tts-1": None, "tts-1-hd": "ultra_quality", "gpt-4o-mini-tts": None}


class VoiceRef(BaseModel):
    """OpenAI's object form of ``voice``: ``{"id": "<voice id>"}``."""

    model_config = ConfigDict(extra="forbid")
    id: VoiceName


class SpeechRequest(BaseModel):
    """``POST /v1/audio/speech`` body (OpenAI shape, plus optional XTTS fields)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelId = "tts-1"
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    voice: VoiceName | VoiceRef
    response_format: ResponseFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(default=None, max_length=MAX_INPUT_CHARS)
    # Extensions (send with the SDK's extra_body):
    language: LanguageCode | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    quality_profile: ProfileName | None = None
    allow_fallback: bool = False
    stream_unit: Literal["pieces", "tokens"] | None = None

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input is blank; send text to speak")
        return value


class TTSRequest(BaseModel):
    """``POST /tts`` and ``POST /tts/stream`` body (JSON, or the same fields as multipart form)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    language: LanguageCode | None = None
    voice: VoiceName | None = None
    model: ModelId | None = None
    allow_fallback: bool = False
    quality_profile: ProfileName = "balanced"
    temperature: float | None = Field(default=None, ge=MIN_TEMPERATURE, le=2.0)
    top_k: int | None = Field(default=None, ge=1, le=1000)
    top_p: float | None = Field(default=None, gt=0, le=1.0)
    repetition_penalty: float | None = Field(default=None, ge=1.0, le=50.0)
    length_penalty: float | None = Field(default=None, ge=0.0, le=10.0)
    speed: float | None = Field(default=None, ge=0.25, le=4.0)
    do_sample: bool | None = None
    split_chars: int | None = Field(default=None, ge=20, le=400)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    format: ResponseFormat = "wav"

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is blank; send text to speak")
        return value

    def overrides(self) -> dict[str, Any]:
        """The sampling overrides the caller set."""
        names = ("temperature", "top_k", "top_p", "repetition_penalty", "length_penalty", "speed", "do_sample")
        values = {name: getattr(self, name) for name in names} | {"split_chars": self.split_chars}
        return {k: v for k, v in values.items() if v is not None}


@dataclass
class SynthesisRequest:
    """What the ingress asks of the TTS deployment."""

    text: str
    language: str | None = None
    voice: str | None = None
    references: list[np.ndarray] | None = None
    model: str | None = None
    allow_fallback: bool = False
    profile: str = "balanced"
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    response_format: str = "wav"
    raw: bool = False
    stream_unit: str = "tokens"


@dataclass
class SynthesisResult:
    """What the TTS deployment answers (for streams: the first item, with ``audio`` empty)."""

    audio: bytes
    media_type: str
    sample_rate: int
    model_requested: str
    model_used: str
    fallback_reason: str | None
    seed: int
    language: str
    voice: str
    pieces: int = 0
    audio_seconds: float = 0.0
    synth_seconds: float = 0.0
    first_chunk_s: float | None = None
    untrained: bool = False
    samples: np.ndarray | None = None

    def headers(self) -> dict[str, str]:
        """Response headers describing the synthesis."""
        headers = {
            "x-model-requested": self.model_requested,
            "x-model-used": self.model_used,
            "x-seed": str(self.seed),
            "x-language": self.language,
            "x-sample-rate": str(self.sample_rate),
        }
        if self.audio_seconds:
            headers["x-audio-seconds"] = f"{self.audio_seconds:.3f}"
            headers["x-real-time-factor"] = f"{self.synth_seconds / self.audio_seconds:.3f}"
        if self.fallback_reason:
            headers["x-fallback-reason"] = self.fallback_reason.replace("\n", " ")[:500]
        if self.untrained:
            headers["x-untrained-model"] = "true: random weights, the audio is noise"
        return headers

    def meta(self) -> dict[str, Any]:
        """JSON-ready metadata (no audio)."""
        data = asdict(self)
        data.pop("audio")
        data.pop("samples")
        return data
