"""Health, engines, languages, profiles and models."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from serve_app.context import ctx
from serve_app.speech.profiles import PROFILE_DESCRIPTIONS, PROFILES

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the ingress answers."""
    return {"status": "ok"}


@router.get("/health/engines")
async def engines(request: Request) -> dict[str, Any]:
    """Per model deployment: status, device, sample rate, languages, replicas, loaded models, last error."""
    from ray import serve

    info = await ctx().tts.info.remote()
    try:
        status = serve.status().applications
        app = next(iter(status.values()))
        replicas = app.deployments["TTSDeployment"].replica_states
    except Exception:  # serve.status needs the controller; a missing answer must not fail health
        replicas = None
    return {"TTSDeployment": {**info, "replicas": replicas}}


@router.get("/languages")
async def languages(request: Request) -> dict[str, Any]:
    """Languages of the default model."""
    info = await ctx().tts.info.remote()
    return {"languages": info["languages"], "default": ctx().settings.default_language}


@router.get("/profiles")
async def profiles() -> dict[str, Any]:
    """Quality profiles and their sampling parameters."""
    return {
        "profiles": [
            {"name": name, "description": PROFILE_DESCRIPTIONS[name], "params": params.to_dict()}
            for name, params in PROFILES.items()
        ]
    }


@router.get("/models")
async def models(request: Request) -> dict[str, Any]:
    """Base, fine-tuned and LoRA models in storage, with validity and load status."""
    from voice_core.checkpoints import list_checkpoints
    from voice_core.models import available_models, default_model_id
    from voice_core.storage import Storage

    settings = ctx().settings
    storage = Storage.from_settings(settings)
    info = await ctx().tts.info.remote()
    # Both walk the storage tree (and read checkpoint headers): off the event loop.
    listing = await asyncio.to_thread(list_checkpoints, storage.root, storage.allowed_mounts)
    stored = await asyncio.to_thread(available_models, storage)
    entries = {e.owner: e for e in listing if e.path.startswith("models/") and e.kind in ("model", "lora_adapter")}
    default = default_model_id(settings)
    out = []
    for model_id in sorted(set(stored) | {default}):
        entry = entries.get(model_id)
        out.append(
            {
                "id": model_id,
                "kind": "lora_adapter" if entry and entry.kind == "lora_adapter" else "model",
                "default": model_id == default,
                "status": "broken" if entry and entry.broken else ("ok" if entry else "missing"),
                "reason": entry.reason if entry else ("no weights found" if model_id != default else ""),
                "loaded": model_id in info["loaded_models"],
            }
        )
    return {"models": out, "object": "list"}
