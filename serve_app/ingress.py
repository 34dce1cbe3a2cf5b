"""The HTTP ingress: the FastAPI app (routes, error handlers, the boundary middleware) and the Serve class.

Each capability (``speech``, ``voices``, ``jobs``, ``datasets``, ``training``) is a sub-package whose
``routes`` module holds its HTTP routes; ``info`` and ``web`` hold the rest. Routes reach the
deployments through :func:`serve_app.context.ctx`.
What every request passes before a route sees it is in :mod:`serve_app.boundary`; the OpenAPI document
is completed in :mod:`serve_app.openapi`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from serve_app import info, web
from serve_app.boundary import (
    BoundaryMiddleware,
    allowed_hosts,
    check_exposure,
    describe_validation,
    error_response,
    route_path,
)
from serve_app.context import IngressContext, set_context
from serve_app.datasets import routes as datasets
from serve_app.jobs import routes as jobs
from serve_app.openapi import complete_openapi
from serve_app.speech import routes as speech
from serve_app.training import routes as training
from serve_app.voices import routes as voices
from voice_core.errors import OverloadedError
from voice_core.settings import Settings

log = logging.getLogger(__name__)


async def backpressure_as_overloaded() -> AsyncIterator[None]:
    """Turn Serve's ``BackPressureError`` from a full TTS queue into :class:`OverloadedError`.

    Serve registers its own plain-text handler for ``BackPressureError`` on the ingress app, and that
    handler answers before the middleware sees the exception; translating it here, around the
    route, keeps the JSON error shape and ``Retry-After``.
    """
    from ray.serve.exceptions import BackPressureError

    try:
        yield
    except BackPressureError:
        raise OverloadedError("the service is at capacity (queues are full); retry after a short wait") from None


api = FastAPI(title="Audio Voice Service", version="0.1.0", dependencies=[Depends(backpressure_as_overloaded)])
for router in (info.router, speech.router, voices.router, jobs.router, datasets.router, training.router, web.router):
    api.include_router(router)
api.openapi = lambda: complete_openapi(api)  # type: ignore[method-assign]


@api.exception_handler(RequestValidationError)
async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Turn FastAPI validation errors into 400s naming the field."""
    request.state.error_type = "invalid_request_error"
    return error_response(400, "invalid_request_error", describe_validation(exc.errors()), request.state.request_id)


def _leaf_routes(routes: list) -> list:
    """The routes of an app, those of included routers too (they are included without a prefix)."""
    leaves = []
    for route in routes:
        included = getattr(route, "original_router", None)
        leaves += _leaf_routes(included.routes) if included is not None else [route]
    return leaves


def allowed_methods(path: str) -> list[str]:
    """Every method some route serves at ``path`` (for the ``Allow`` header of a 405)."""
    methods: set[str] = set()
    for route in _leaf_routes(api.routes):
        match, _ = route.matches({"type": "http", "path": path, "method": "", "root_path": ""})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


@api.exception_handler(StarletteHTTPException)
async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing errors (404 unknown path, 405 wrong method, with ``Allow``) in the project's JSON error shape."""
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    request.state.error_type = kind
    message = f"{exc.detail}: {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
    methods = allowed_methods(route_path(request.scope)) if exc.status_code == 405 else []
    if methods:
        message += f"; this path takes {', '.join(methods)}"
    response = error_response(exc.status_code, kind, message, request.state.request_id)
    if methods:
        response.headers["allow"] = ", ".join(methods)
    return response


api.add_middleware(BoundaryMiddleware)


def serve_bound_host(settings: Settings) -> str:
    """The address Serve's HTTP proxies listen on (the settings' ``host`` when Serve cannot say)."""
    try:
        from ray.serve.context import _get_global_client

        return _get_global_client().http_config.host or settings.host
    except Exception:  # no controller to ask (unit tests); the run command binds settings.host
        return settings.host


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    """FastAPI routes in front of the TTS deployment; holds only handles and settings."""

    def __init__(self, tts: DeploymentHandle, settings: Settings, runner: DeploymentHandle | None = None) -> None:
        from voice_core.isolated import warm_up_decoders

        bound = serve_bound_host(settings)
        check_exposure(settings, bound)
        warm_up_decoders()  # uploads are decoded in child processes; start them before the first upload
        set_context(
            IngressContext(tts=tts, settings=settings, runner=runner, allowed_hosts=allowed_hosts(settings, bound))
        )
