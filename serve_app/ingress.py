"""The HTTP ingress: FastAPI app, middleware (request id, auth, errors, metrics) and the Serve class.

Routes live in ``serve_app/routes/``; they reach the deployments through :func:`serve_app.routes.context.ctx`.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.routes import datasets, info, jobs, speech, training, ui, voices
from serve_app.routes.context import IngressContext, ctx, set_context
from voice_core.errors import OverloadedError, ReplicaLostError, UnauthorizedError, VoiceError
from voice_core.settings import Settings

log = logging.getLogger(__name__)

# Routes that never need an API key.
# Liveness and the web UI's page and assets need no key (the page asks for one and sends it on API calls).
PUBLIC_PATHS = ("/health", "/ui/")
PUBLIC_PAGES = frozenset({"/"})


async def backpressure_as_overloaded() -> AsyncIterator[None]:
    """Turn Serve's ``BackPressureError`` from a full TTS queue into :class:`OverloadedError`.

    Serve registers its own plain-text handler for ``BackPressureError`` on the ingress app, and that
    handler answers before the middleware below sees the exception; translating it here, around the
    route, keeps the JSON error shape and ``Retry-After``.
    """
    from ray.serve.exceptions import BackPressureError

    try:
        yield
    except BackPressureError:
        raise OverloadedError("the service is at capacity (queues are full); retry after a short wait") from None


api = FastAPI(title="Audio Voice Service", version="0.1.0", dependencies=[Depends(backpressure_as_overloaded)])
for router in (info.router, speech.router, voices.router, jobs.router, datasets.router, training.router, ui.router):
    api.include_router(router)


def error_response(status: int, error_type: str, message: str, request_id: str) -> JSONResponse:
    """Build the project's JSON error body ``{"error": {"message", "type", "request_id"}}``."""
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": error_type, "request_id": request_id}},
    )


def as_voice_error(exc: BaseException) -> VoiceError | None:
    """Return the project error behind ``exc`` (also when Ray wrapped it on the way back).

    A replica that died while it held the request (``RayActorError``: its process or node was lost)
    becomes :class:`ReplicaLostError`, a 503 the caller can retry, rather than an internal error.
    """
    from ray.exceptions import RayActorError

    cause = getattr(exc, "cause", None)
    if isinstance(cause, VoiceError):
        return cause
    if isinstance(exc, RayActorError):
        return ReplicaLostError(
            "the replica working on this request was lost (its process or node failed); retry: another replica "
            "will answer"
        )
    return exc if isinstance(exc, VoiceError) else None


def voice_error_response(error: VoiceError, request_id: str) -> JSONResponse:
    """JSON error response for a project error (503s carry ``Retry-After``)."""
    response = error_response(error.status_code, error.error_type, error.message, request_id)
    if error.status_code == 503:
        response.headers["retry-after"] = "1"
    if error.status_code == 401:
        response.headers["www-authenticate"] = "Bearer"
    return response


@api.exception_handler(RequestValidationError)
async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Turn FastAPI validation errors into 400s naming the field."""
    request.state.error_type = "invalid_request_error"
    return error_response(400, "invalid_request_error", describe_validation(exc.errors()), request.state.request_id)


@api.exception_handler(StarletteHTTPException)
async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing errors (404 unknown path, 405 wrong method) in the project's JSON error shape."""
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    request.state.error_type = kind
    message = f"{exc.detail}: {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
    return error_response(exc.status_code, kind, message, request.state.request_id)


def describe_validation(errors: list) -> str:
    """One readable line per invalid field (``field 'input': String should have at most 4096 characters``)."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form")]
        field = ".".join(loc) or "body"
        parts.append(f"field '{field}': {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class RequestContextMiddleware:
    """Request id, API-key check, project errors as JSON, and request metrics (pure ASGI).

    A plain ASGI wrapper rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
    runs the route in a second task and copies every response message through a memory stream,
    which costs about a millisecond per request on a small machine and more per streamed chunk.
    The request's metrics are recorded when its response starts (status known), as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call; non-HTTP scopes (lifespan) pass straight through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from serve_app.metrics import record_request

        state = scope.setdefault("state", {})
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        state["request_id"] = request_id
        started = time.perf_counter()
        response_started = False

        async def send_and_record(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start" and not response_started:
                response_started = True
                # error_type is set by the exception handlers above when they answer.
                seconds = time.perf_counter() - started
                record_request(_route_path(scope), message["status"], seconds, state.get("error_type"))
            await send(message)

        try:
            check_api_key(headers, scope["path"])
            await self.app(scope, receive, send_and_record)
        except Exception as exc:  # every error leaves as JSON, never as a traceback
            if response_started:
                raise  # a stream failed midway: its status line is gone, nothing else can be sent
            error = as_voice_error(exc)
            if error is None:
                log.exception("request %s failed", request_id)
                response = error_response(500, "internal_error", "internal error; see the service log", request_id)
                state["error_type"] = "internal_error"
            else:
                response = voice_error_response(error, request_id)
                state["error_type"] = error.error_type
            await response(scope, receive, send_and_record)


def _route_path(scope: Scope) -> str:
    """The matched route's template (``/voices/{voice_id}``), a bounded metric label."""
    return getattr(scope.get("route"), "path", "unmatched")


api.add_middleware(RequestContextMiddleware)


def check_api_key(headers: Headers, path: str) -> None:
    """Raise UnauthorizedError unless the request carries one of the configured keys (or keys are off).

    Args:
        headers: the request's headers.
        path: the request path (paths under :data:`PUBLIC_PATHS` need no key).
    """
    settings: Settings = ctx().settings
    if not settings.api_keys or path.startswith(PUBLIC_PATHS) or path in PUBLIC_PAGES:
        return
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        for key in settings.api_keys:
            if hmac.compare_digest(token.encode(), key.get_secret_value().encode()):
                return
    raise UnauthorizedError("missing or invalid API key: send 'Authorization: Bearer <key>'")


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    """FastAPI routes in front of the TTS deployment; holds only handles and settings."""

    def __init__(self, tts: DeploymentHandle, settings: Settings, runner: DeploymentHandle | None = None) -> None:
        set_context(IngressContext(tts=tts, settings=settings, runner=runner))
