"""The request boundary: everything a request passes before a route sees it, and errors on the way out.

One pure-ASGI middleware (:class:`BoundaryMiddleware`) gives every HTTP request:

- a request id (the client's ``x-request-id`` when it is a short safe token, else a new one);
- the ``Host`` allow-list (DNS rebinding: a page served from another name cannot reach a loopback service);
- the cross-origin check: a state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` is another site
  is refused unless that origin is configured (``AVS_CORS_ORIGINS``), since a web page may post a form to
  any address;
- the API key (only ``/health``, the page ``/`` and its assets under ``/ui/`` are public);
- the body limit of its route, counted on the bytes actually received (chunked bodies included), 413 past it;
- project errors as JSON ``{"error": {"message", "type", "request_id"}}``, server paths removed from messages.

The one JSON reader of every route is :func:`serve_app.http.read_json`.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import time
import uuid
from pathlib import Path

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voice_core.errors import (
    ForbiddenError,
    InvalidInputError,
    PayloadTooLargeError,
    ReplicaLostError,
    UnauthorizedError,
    VoiceError,
)
from voice_core.settings import Settings

log = logging.getLogger(__name__)

# Liveness, the page and its assets need no key (the page asks for one and sends it on API calls).
PUBLIC_PATHS = frozenset({"/health", "/"})
PUBLIC_PREFIXES = ("/ui/",)
# Room for a form's text fields and part headers on top of its files.
FORM_OVERHEAD_BYTES = 1_000_000
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def error_response(status: int, error_type: str, message: str, request_id: str) -> JSONResponse:
    """Build the project's JSON error body ``{"error": {"message", "type", "request_id"}}``."""
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": error_type, "request_id": request_id}},
    )


def describe_validation(errors: list) -> str:
    """One readable line per invalid field (``field 'input': String should have at most 4096 characters``)."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form")]
        field = ".".join(loc) or "body"
        parts.append(f"field '{field}': {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


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


def redact_paths(message: str, settings: Settings) -> str:
    """Replace the server's own directories in ``message`` with names a client may see.

    The storage root becomes ``storage`` (so ``/srv/avs/storage/runs/x`` reads ``storage/runs/x``), allowed
    mounts become ``<mount>``, and the service's working directory ``<service>``.
    """
    replacements: list[tuple[str, str]] = []
    root = Path(settings.storage_root)
    for path in {str(root), str(root.resolve())}:
        replacements.append((path, "storage"))
    for mount in settings.allowed_mounts:
        replacements.append((str(mount), "<mount>"))
    replacements.append((os.getcwd(), "<service>"))
    for path, name in sorted(replacements, key=lambda pair: len(pair[0]), reverse=True):
        if len(path) > 1:
            message = message.replace(path, name)
    return message


def voice_error_response(error: VoiceError, request_id: str, settings: Settings | None = None) -> JSONResponse:
    """JSON error response for a project error (503s carry ``Retry-After``, 401s ``WWW-Authenticate``)."""
    message = redact_paths(error.message, settings) if settings is not None else error.message
    response = error_response(error.status_code, error.error_type, message, request_id)
    if error.status_code == 503:
        response.headers["retry-after"] = "1"
    if error.status_code == 401:
        response.headers["www-authenticate"] = "Bearer"
    return response


def is_public(path: str) -> bool:
    """Whether ``path`` is served without an API key (exact paths; only the UI's assets by prefix)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def check_api_key(headers: Headers, path: str, settings: Settings) -> None:
    """Raise UnauthorizedError unless the request carries one of the configured keys (or keys are off).

    Args:
        headers: the request's headers.
        path: the request path (see :func:`is_public`).
        settings: the service settings (``api_keys``).
    """
    if not settings.api_keys or is_public(path):
        return
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        for key in settings.api_keys:
            if hmac.compare_digest(token.encode(), key.get_secret_value().encode()):
                return
    raise UnauthorizedError("missing or invalid API key: send 'Authorization: Bearer <key>'")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only answers on this machine."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(settings: Settings, bound_host: str) -> frozenset[str] | None:
    """Host names requests may name: ``AVS_ALLOWED_HOSTS``, else loopback names when bound to loopback.

    Returns:
        The allowed names (lower case, no port), or None when any host is allowed.
    """
    if settings.allowed_hosts:
        return frozenset(h.lower() for h in settings.allowed_hosts)
    if is_loopback(bound_host):
        return frozenset({*LOOPBACK_NAMES, "[::1]", bound_host.lower()})
    return None


def host_name(value: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8000`` -> ``[::1]``, ``Example.org:80`` -> ``example.org``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def check_host(headers: Headers, allowed: frozenset[str] | None) -> None:
    """Refuse a request whose ``Host`` is not one this service answers to."""
    if allowed is None:
        return
    name = host_name(headers.get("host", ""))
    if name not in allowed and name.strip("[]") not in allowed:
        shown = name[:100] or "(none)"
        raise InvalidInputError(
            f"host {shown!r} is not served here; use one of {', '.join(sorted(allowed))}, or add the name to "
            "AVS_ALLOWED_HOSTS"
        )


def check_origin(method: str, headers: Headers, settings: Settings) -> None:
    """Refuse a state-changing request sent by a page of another origin (unless that origin is configured)."""
    origin = headers.get("origin")
    if method not in STATE_CHANGING or not origin:
        return
    if origin in settings.cors_origins:
        return
    host = headers.get("host", "")
    if origin.split("://", 1)[-1].lower() == host.lower():
        return  # the service's own page
    raise ForbiddenError(
        f"cross-origin request from {origin[:200]!r} refused; add the origin to AVS_CORS_ORIGINS to allow pages there"
    )


def body_limit(method: str, path: str, settings: Settings) -> int:
    """The most bytes the body of a request to ``path`` may have."""
    if method != "POST":
        return settings.max_json_bytes
    uploads = settings.max_reference_files * settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    limits = {
        "/tts": uploads,
        "/tts/stream": uploads,
        "/voices": uploads,
        "/jobs": settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
        "/datasets": settings.max_dataset_files * settings.max_dataset_file_bytes + FORM_OVERHEAD_BYTES,
    }
    return limits.get(path.rstrip("/") or "/", settings.max_json_bytes)


def _too_large(limit: int, what: str) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body {what}; this route takes at most {limit} bytes (see AVS_MAX_UPLOAD_BYTES, "
        "AVS_MAX_JSON_BYTES and the upload limits in the README)"
    )


class _CountedReceive:
    """A ``receive`` that counts the body bytes actually received and stops past ``limit``."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive, self.limit, self.received = receive, limit, 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise _too_large(self.limit, f"passed {self.limit} bytes")
        return message


def _declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise InvalidInputError(f"Content-Length {value[:40]!r} is not a whole number of bytes")
    return int(value)


class BoundaryMiddleware:
    """Request id, host, origin, API key and body-size checks; project errors as JSON; request metrics.

    A plain ASGI wrapper rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
    runs the route in a second task and copies every response message through a memory stream,
    which costs about a millisecond per request on a small machine and more per streamed chunk.
    The request's metrics are recorded when its response starts (status known).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: tuple[tuple[str, ...], ASGIApp] | None = None

    def _inner(self, settings: Settings) -> ASGIApp:
        """The app, wrapped in Starlette's CORS middleware when origins are configured (else no CORS at all)."""
        origins = tuple(settings.cors_origins)
        if not origins:
            return self.app
        if self._cors is None or self._cors[0] != origins:
            from starlette.middleware.cors import CORSMiddleware

            wrapped = CORSMiddleware(
                self.app,
                allow_origins=list(origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["authorization", "content-type", "x-request-id"],
                expose_headers=["x-request-id", "x-model-used", "x-model-requested", "x-seed", "x-fallback-reason"],
            )
            self._cors = (origins, wrapped)
        return self._cors[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call; non-HTTP scopes (lifespan, websockets) pass straight through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from serve_app.context import ctx
        from serve_app.speech.metrics import record_request

        context = ctx()
        settings = context.settings
        state = scope.setdefault("state", {})
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state["request_id"] = request_id
        started = time.perf_counter()
        response_started = False

        async def send_and_record(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start" and not response_started:
                response_started = True
                # error_type is set by the exception handlers when they answer.
                seconds = time.perf_counter() - started
                record_request(_route_path(scope), message["status"], seconds, state.get("error_type"))
            await send(message)

        inner = self._inner(settings)
        try:
            check_host(headers, context.allowed_hosts)
            if scope["method"] == "OPTIONS" and "access-control-request-method" in headers and inner is not self.app:
                await inner(scope, receive, send_and_record)  # a CORS preflight carries no key
                return
            path = route_path(scope)
            check_api_key(headers, path, settings)
            check_origin(scope["method"], headers, settings)
            limit = body_limit(scope["method"], path, settings)
            declared = _declared_length(headers)
            if declared is not None and declared > limit:
                raise _too_large(limit, f"is {declared} bytes")
            await inner(scope, _CountedReceive(receive, limit), send_and_record)
        except Exception as exc:  # every error leaves as JSON, never as a traceback
            if response_started:
                raise  # a stream failed midway: its status line is gone, nothing else can be sent
            error = as_voice_error(exc)
            if error is None:
                log.exception("request %s failed", request_id)
                response = error_response(500, "internal_error", "internal error; see the service log", request_id)
                state["error_type"] = "internal_error"
            else:
                response = voice_error_response(error, request_id, settings)
                state["error_type"] = error.error_type
            await response(scope, receive, send_and_record)


def route_path(scope: Scope) -> str:
    """The request's path inside the application (without the prefix the app is mounted at)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def _route_path(scope: Scope) -> str:
    """The matched route's template (``/voices/{voice_id}``), a bounded metric label."""
    return getattr(scope.get("route"), "path", "unmatched")


def check_exposure(settings: Settings, bound_host: str) -> None:
    """Refuse to serve on a non-loopback address without API keys, unless that is asked for explicitly.

    Raises:
        ConfigError: ``bound_host`` is reachable from other machines, no key is set and
            ``AVS_ALLOW_UNAUTHENTICATED`` is false.
    """
    from voice_core.errors import ConfigError

    if is_loopback(bound_host) or settings.api_keys or settings.allow_unauthenticated:
        return
    raise ConfigError(
        f"refusing to serve on {bound_host} without API keys: anyone who reaches that address could use every "
        "route. Set AVS_API_KEYS (clients then send 'Authorization: Bearer <key>'), listen on 127.0.0.1 "
        "(AVS_HOST), or set AVS_ALLOW_UNAUTHENTICATED=true to serve it open on purpose"
    )
