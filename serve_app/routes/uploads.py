"""Reading request bodies: JSON or multipart form into a pydantic model, and reference audio uploads."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import numpy as np
from fastapi import Request, UploadFile
from pydantic import BaseModel, ValidationError

from serve_app.routes.context import ctx
from voice_core.errors import InvalidInputError, PayloadTooLargeError
from voice_core.isolated import decode_untrusted
from voice_core.settings import Settings

Model = TypeVar("Model", bound=BaseModel)
REFERENCE_RATE = 22050


async def parse_body(request: Request, model: type[Model], file_fields: tuple[str, ...] = ()) -> tuple[Model, dict]:
    """Parse a JSON or form body into ``model``; return it with the uploaded files by field name.

    Raises:
        InvalidInputError: malformed JSON, unknown or invalid fields (the message names them).
        PayloadTooLargeError: the body is larger than ``max_upload_bytes``.
    """
    settings: Settings = ctx().settings
    declared = int(request.headers.get("content-length") or 0)
    if declared > settings.max_upload_bytes * 2:
        raise PayloadTooLargeError(
            f"request body is {declared} bytes; the limit is about {settings.max_upload_bytes} per upload "
            "(AVS_MAX_UPLOAD_BYTES)"
        )
    content_type = request.headers.get("content-type", "")
    files: dict[str, list[UploadFile]] = {}
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_files=settings.max_reference_files + 1)
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
    else:
        data = await read_json_object(request)
    try:
        return model.model_validate(data), files
    except ValidationError as exc:
        from serve_app.ingress import describe_validation

        raise InvalidInputError(describe_validation(exc.errors())) from None


async def read_json_object(request: Request) -> dict[str, Any]:
    """Read the body as a JSON object.

    Raises:
        InvalidInputError: the body is not valid JSON or not an object.
    """
    try:
        data = json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise InvalidInputError(f"body is not valid JSON ({exc}); send a JSON object or a multipart form") from None
    if not isinstance(data, dict):
        raise InvalidInputError("body must be a JSON object")
    return data


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
