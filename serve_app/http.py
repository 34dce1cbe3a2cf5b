"""Reading request bodies: the one JSON reader, JSON or multipart form into a pydantic model, reference audio.

:func:`read_json` is the JSON reader of every route: media type ``application/json`` (415 otherwise: a
browser form cannot post JSON), a nesting limit (400) and an object at the top (400). The body's size is
bounded before it gets here (:class:`serve_app.boundary.BoundaryMiddleware`).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import numpy as np
from fastapi import Request, UploadFile
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.boundary import describe_validation
from serve_app.context import ctx
from voice_core.errors import InvalidInputError, PayloadTooLargeError, UnsupportedMediaTypeError
from voice_core.isolated import decode_untrusted
from voice_core.settings import Settings

Model = TypeVar("Model", bound=BaseModel)
REFERENCE_RATE = 22050
# Deeper JSON than this is refused before any model sees it (no request body here nests more than 3 levels).
MAX_JSON_DEPTH = 32


def is_json(content_type: str) -> bool:
    """Whether a ``Content-Type`` value is JSON (``application/json``, ``application/x+json``, any charset)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def is_form(content_type: str) -> bool:
    """Whether a ``Content-Type`` value is an HTML form (multipart or URL-encoded)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("multipart/form-data", "application/x-www-form-urlencoded")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def parse_json(data: bytes) -> Any:
    """Parse a JSON document, refusing invalid text and nesting deeper than :data:`MAX_JSON_DEPTH`.

    Raises:
        InvalidInputError: not JSON, not UTF-8, or nested too deeply.
    """
    try:
        value = json.loads(data or b"null")
    except RecursionError:
        value = None
        depth = MAX_JSON_DEPTH + 1
    except ValueError as exc:
        raise InvalidInputError(f"body is not valid JSON ({exc}); send a JSON object") from None
    else:
        depth = _depth(value)
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError(f"body nests deeper than {MAX_JSON_DEPTH} levels; send a flat JSON object")
    return value


async def read_json(request: Request, *, form_allowed: bool = False) -> dict[str, Any]:
    """Read the body as a JSON object: the one JSON reader of every route.

    Args:
        request: the request (its body is already bounded by :class:`BoundaryMiddleware`).
        form_allowed: whether the route also takes a form (only changes the error message).

    Raises:
        UnsupportedMediaTypeError: the body is not sent as ``application/json``.
        InvalidInputError: the body is not valid JSON, too deep, or not an object.
    """
    content_type = request.headers.get("content-type", "")
    if not is_json(content_type):
        alternative = " or a multipart form" if form_allowed else ""
        shown = content_type.split(";", 1)[0][:100] or "none"
        raise UnsupportedMediaTypeError(
            f"Content-Type {shown!r} is not accepted here; send JSON with 'Content-Type: application/json'{alternative}"
        )
    data = parse_json(await request.body())
    if not isinstance(data, dict):
        raise InvalidInputError("body must be a JSON object")
    return data


async def parse_body(
    request: Request,
    model: type[Model],
    file_fields: tuple[str, ...] = (),
    *,
    json_allowed: bool = True,
    form_allowed: bool = True,
) -> tuple[Model, dict]:
    """Parse a JSON or form body into ``model``; return it with the uploaded files by field name.

    The body's size is already bounded by the boundary middleware (counted as it arrives).

    Args:
        request: the request.
        model: the pydantic model of the fields.
        file_fields: form fields that carry files.
        json_allowed: whether ``application/json`` is taken.
        form_allowed: whether a multipart (or URL-encoded) form is taken.

    Raises:
        UnsupportedMediaTypeError: the body is sent as a media type the route does not take.
        InvalidInputError: malformed JSON, unknown or invalid fields (the message names them).
    """
    settings: Settings = ctx().settings
    content_type = request.headers.get("content-type", "")
    files: dict[str, list[UploadFile]] = {}
    if is_form(content_type) and form_allowed:
        try:
            form = await request.form(max_files=settings.max_reference_files + 1, max_fields=50)
        except StarletteHTTPException as exc:
            raise InvalidInputError(f"the form could not be read: {exc.detail}") from None
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
            elif key in file_fields:
                files.setdefault(key, []).append(value)
            else:
                raise InvalidInputError(
                    f"unexpected file field '{key}'; files go in: {', '.join(file_fields) or 'none'}"
                )
        data: Any = {k: (None if v == "" else v) for k, v in fields.items()}
    elif not json_allowed:
        shown = content_type.split(";", 1)[0][:100] or "none"
        raise UnsupportedMediaTypeError(f"Content-Type {shown!r} is not accepted here; send a multipart form")
    else:
        data = await read_json(request, form_allowed=form_allowed)
    try:
        return model.model_validate(data), files
    except ValidationError as exc:
        raise InvalidInputError(describe_validation(exc.errors())) from None


async def read_references(uploads: list[UploadFile], settings: Settings) -> list[np.ndarray]:
    """Decode uploaded reference recordings safely, enforcing size, count, channel and duration limits.

    Each file is decoded in a child process (:func:`voice_core.isolated.decode_untrusted`), so a
    file that crashes or hangs the decoder fails its request with a 400 and the ingress lives on.

    Returns:
        Mono float32 arrays at 22.05 kHz.
    """
    if len(uploads) > settings.max_reference_files:
        raise InvalidInputError(
            f"{len(uploads)} reference files sent; at most {settings.max_reference_files} (AVS_MAX_REFERENCE_FILES)"
        )
    references = []
    for upload in uploads:
        data = await upload.read(settings.max_upload_bytes + 1)
        name = upload.filename or "upload"
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLargeError(
                f"reference '{name}' is larger than {settings.max_upload_bytes} bytes (AVS_MAX_UPLOAD_BYTES)"
            )
        try:
            audio = await decode_untrusted(
                data,
                REFERENCE_RATE,
                max_seconds=settings.max_reference_seconds,
                max_channels=settings.max_audio_channels,
                timeout_s=settings.audio_decode_timeout_s,
            )
        except InvalidInputError as exc:
            raise type(exc)(f"reference '{name}': {exc}") from None
        seconds = len(audio) / REFERENCE_RATE
        if seconds < settings.min_reference_seconds:
            raise InvalidInputError(
                f"reference '{name}' is {seconds:.2f} s long; "
                f"send at least {settings.min_reference_seconds} s of speech"
            )
        references.append(audio)
    return references
