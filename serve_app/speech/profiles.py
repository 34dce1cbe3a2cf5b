"""Quality profiles: named sets of XTTS sampling parameters, overridable per request."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any

from pydantic import AfterValidator

from voice_core.errors import InvalidInputError


@dataclass(frozen=True)
class SamplingParams:
    """Parameters of one synthesis (the XTTS GPT sampler plus speed and text splitting).

    Attributes:
        temperature: softmax temperature of the GPT sampler.
        top_k: sample among the k most likely audio tokens.
        top_p: nucleus sampling mass.
        repetition_penalty: penalty on repeated audio tokens (XTTS needs a high one).
        length_penalty: beam-length penalty passed to generate.
        speed: speaking rate, 0.25-4.0 (1.0 natural).
        do_sample: False for greedy decoding (deterministic without a seed).
        split_chars: characters per synthesised piece; None uses the language's limit.
        stream_chunk_tokens: audio tokens per streamed chunk (smaller: earlier first audio).
    """

    temperature: float = 0.75
    top_k: int = 50
    top_p: float = 0.85
    repetition_penalty: float = 10.0
    length_penalty: float = 1.0
    speed: float = 1.0
    do_sample: bool = True
    split_chars: int | None = None
    stream_chunk_tokens: int = 20

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


PROFILES: dict[str, SamplingParams] = {
    "fast": SamplingParams(temperature=0.65, top_k=30, top_p=0.8, split_chars=150, stream_chunk_tokens=10),
    "balanced": SamplingParams(),
    "expressive": SamplingParams(temperature=0.9, top_k=80, top_p=0.95, repetition_penalty=7.0),
    "ultra_quality": SamplingParams(temperature=0.6, top_k=25, top_p=0.8, repetition_penalty=12.0, split_chars=180),
}
PROFILE_DESCRIPTIONS: dict[str, str] = {
    "fast": "lower temperature, shorter pieces and small stream chunks: earliest audio",
    "balanced": "the XTTS-v2 release defaults",
    "expressive": "higher temperature and wider sampling: livelier prosody, more variation",
    "ultra_quality": "conservative sampling and stronger repetition penalty: fewest artefacts",
}
# Below this the sampler's logits / temperature overflow to inf and the softmax to NaN.
MIN_TEMPERATURE = 0.01
OVERRIDABLE: frozenset[str] = frozenset(
    {"temperature", "top_k", "top_p", "repetition_penalty", "length_penalty", "speed", "do_sample", "split_chars"}
)


def resolve_params(profile: str, overrides: dict[str, Any] | None = None) -> SamplingParams:
    """Return the profile's parameters with per-request overrides applied.

    Raises:
        InvalidInputError: unknown profile or override name, or a temperature below ``MIN_TEMPERATURE``.
    """
    if profile not in PROFILES:
        raise InvalidInputError(f"unknown quality profile {profile!r}; use one of: {', '.join(PROFILES)}")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(given) - OVERRIDABLE
    if unknown:
        raise InvalidInputError(f"cannot override {sorted(unknown)}; overridable: {sorted(OVERRIDABLE)}")
    if given.get("temperature", MIN_TEMPERATURE) < MIN_TEMPERATURE:
        raise InvalidInputError(f"temperature {given['temperature']!r} is too small; use {MIN_TEMPERATURE} to 2")
    return replace(PROFILES[profile], **given)


def _known_profile(value: str) -> str:
    if value not in PROFILES:
        raise ValueError(f"unknown quality profile; use one of {', '.join(PROFILES)}")
    return value


# A quality profile name, validated at the HTTP boundary (pydantic field type).
ProfileName = Annotated[str, AfterValidator(_known_profile)]
