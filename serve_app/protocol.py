"""Field types every capability's protocol shares: model ids, voice names, language codes, audio formats."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from voice_core.storage import COMPONENT_PATTERN, validate_component

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


VOICE_PATTERN = r"^[^\x00-\x1f\x7f]+$"
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$"


def _model_id(value: str) -> str:
    return validate_component(value, "model id")


def _voice_name(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("a voice name has no control characters; use a stored voice id or a speaker name")
    return value


# Ids checked at the boundary, before they reach a header, a log line or a path.
ModelId = Annotated[
    str,
    AfterValidator(_model_id),
    WithJsonSchema({"type": "string", "pattern": COMPONENT_PATTERN, "minLength": 1, "maxLength": 128}),
]
VoiceName = Annotated[
    str,
    Field(min_length=1, max_length=128),
    AfterValidator(_voice_name),
    WithJsonSchema({"type": "string", "pattern": VOICE_PATTERN, "minLength": 1, "maxLength": 128}),
]
LanguageCode = Annotated[str, Field(min_length=2, max_length=16, pattern=LANGUAGE_PATTERN)]
