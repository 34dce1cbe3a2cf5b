"""Voices: built-in speakers and stored voices (reference audio + cached latents)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serve_app.context import ctx
from serve_app.http import parse_body, read_references
from serve_app.voices.protocol import CreateVoice
from serve_app.voices.service import VoiceStore
from voice_core.errors import InvalidInputError
from voice_core.storage import Storage

router = APIRouter()


def _store(request: Request) -> VoiceStore:
    return VoiceStore(Storage.from_settings(ctx().settings))


@router.post("/voices", status_code=201)
async def create_voice(request: Request) -> dict[str, Any]:
    """Create a voice from one or more reference recordings; latents are computed once and stored."""
    body, files = await parse_body(request, CreateVoice, file_fields=("files",), json_allowed=False)
    uploads = files.get("files", [])
    if not uploads:
        raise InvalidInputError("no reference audio: send one or more files in the multipart field 'files'")
    references = await read_references(uploads, ctx().settings)
    return await ctx().tts.create_voice.remote(body.name, body.language, references)


@router.get("/voices")
async def list_voices(request: Request) -> dict[str, Any]:
    """Stored voices and the default model's built-in speakers (and the OpenAI name mapping)."""
    info = await ctx().tts.info.remote()
    settings = ctx().settings
    builtin = [{"id": name, "name": name, "kind": "builtin"} for name in info["model"]["speakers"]]
    return {"voices": _store(request).list() + builtin, "openai_voices": settings.openai_voices}


@router.get("/voices/{voice_id}")
async def get_voice(request: Request, voice_id: str) -> dict[str, Any]:
    """One stored voice."""
    return _store(request).get(voice_id)


@router.delete("/voices/{voice_id}", status_code=204)
async def delete_voice(request: Request, voice_id: str) -> Response:
    """Delete a stored voice."""
    await asyncio.to_thread(_store(request).delete, voice_id)  # removing the files takes a while
    return Response(status_code=204)
