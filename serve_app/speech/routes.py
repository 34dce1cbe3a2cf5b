"""Speech: OpenAI-compatible ``/v1/audio/speech`` and the native ``/tts`` and ``/tts/stream``."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from serve_app.context import ctx
from serve_app.http import parse_body, read_references
from serve_app.speech.protocol import OPENAI_MODEL_ALIASES, SpeechRequest, SynthesisRequest, SynthesisResult, TTSRequest

router = APIRouter()


def _from_openai(body: SpeechRequest) -> SynthesisRequest:
    alias_profile = OPENAI_MODEL_ALIASES.get(body.model)
    voice = body.voice.id if not isinstance(body.voice, str) else body.voice
    return SynthesisRequest(
        text=body.input,
        language=body.language,
        voice=voice,
        model=None if body.model in OPENAI_MODEL_ALIASES else body.model,
        allow_fallback=body.allow_fallback,
        profile=body.quality_profile or alias_profile or "balanced",
        overrides={"speed": body.speed} if body.speed != 1.0 else {},
        seed=body.seed,
        response_format=body.response_format,
        stream_unit=body.stream_unit or ctx().settings.openai_stream_unit,
    )


async def _open_stream(request: Request, synthesis: SynthesisRequest) -> tuple[SynthesisResult, AsyncIterator[bytes]]:
    """Start a streamed synthesis; errors before the first chunk surface here (as HTTP errors)."""
    generator = ctx().tts.options(stream=True).stream.remote(synthesis)
    meta: SynthesisResult = await generator.__anext__()
    return meta, generator


@router.post("/v1/audio/speech")
async def openai_speech(request: Request) -> Response:
    """OpenAI-compatible speech. Audio is streamed as it is made; ``stream_format=sse`` sends JSON events.

    ``instructions`` is accepted and ignored (XTTS does not follow style prompts); the response
    says so in ``x-instructions-ignored``.
    """
    body, _ = await parse_body(request, SpeechRequest, form_allowed=False)
    meta, chunks = await _open_stream(request, _from_openai(body))
    headers = meta.headers()
    if body.instructions:
        headers["x-instructions-ignored"] = "true"
    if body.stream_format == "sse":
        return StreamingResponse(_sse(chunks, body.input), media_type="text/event-stream", headers=headers)
    return StreamingResponse(chunks, media_type=meta.media_type, headers=headers)


async def _sse(chunks: AsyncIterator[bytes], text: str) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()}
        yield f"data: {json.dumps(event)}\n\n".encode()
    tokens = max(1, len(text) // 4)
    usage = {"input_tokens": tokens, "output_tokens": total, "total_tokens": tokens + total}
    yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()


async def _native_request(request: Request) -> SynthesisRequest:
    body, files = await parse_body(request, TTSRequest, file_fields=("reference",))
    references = await read_references(files.get("reference", []), ctx().settings) or None
    return SynthesisRequest(
        text=body.text,
        language=body.language,
        voice=body.voice,
        references=references,
        model=body.model,
        allow_fallback=body.allow_fallback,
        profile=body.quality_profile,
        overrides=body.overrides(),
        seed=body.seed,
        response_format=body.format,
    )


@router.post("/tts")
async def tts(request: Request) -> Response:
    """Synthesise a whole text (JSON body, or multipart with ``reference`` audio files)."""
    synthesis = await _native_request(request)
    result: SynthesisResult = await ctx().tts.synthesize.remote(synthesis)
    return Response(result.audio, media_type=result.media_type, headers=result.headers())


@router.post("/tts/stream")
async def tts_stream(request: Request) -> Response:
    """Synthesise with chunked audio: the first chunk leaves as soon as the model has produced it."""
    meta, chunks = await _open_stream(request, await _native_request(request))
    return StreamingResponse(chunks, media_type=meta.media_type, headers=meta.headers())
