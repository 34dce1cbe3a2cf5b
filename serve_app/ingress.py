"""The HTTP ingress: routes only; work is delegated to deployment handles."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from voice_core.errors import VoiceError

log = logging.getLogger(__name__)

api = FastAPI(title="Audio Voice Service", version="0.1.0")


@api.middleware("http")
async def request_id_and_errors(request: Request, call_next):
    """Give every request an id and turn project errors into ``{"error": {...}}`` JSON."""
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    request.state.request_id = request_id
    try:
        response = await call_next(request)
    except VoiceError as exc:
        response = error_response(exc.status_code, exc.error_type, exc.message, request_id)
    except Exception:
        log.exception("request %s failed", request_id)
        response = error_response(500, "internal_error", "internal error; see the service log", request_id)
    response.headers["x-request-id"] = request_id
    return response


def error_response(status: int, error_type: str, message: str, request_id: str) -> JSONResponse:
    """Build the project's JSON error body."""
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": error_type, "request_id": request_id}},
    )


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    """FastAPI routes in front of the TTS deployment."""

    def __init__(self, tts: DeploymentHandle) -> None:
        self._tts = tts

    @api.get("/health")
    async def health(self) -> dict[str, str]:
        """Liveness: the ingress answers."""
        return {"status": "ok"}

    @api.get("/health/engines")
    async def engines(self) -> dict[str, object]:
        """Per model deployment: status, device, sample rate, languages, loaded model."""
        return {"TTSDeployment": await self._tts.info.remote()}
