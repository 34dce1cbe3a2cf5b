"""The OpenAPI document, completed so that it describes the API exactly.

FastAPI derives most of the document from the routes. What it cannot see is added here, in one place:

- request bodies of the routes that read JSON *or* a multipart form themselves (``/tts``, ``/voices``, ...);
- the error answers every operation can give (one ``Error`` schema), instead of FastAPI's unused 422;
- the audio media types of the routes that answer audio;
- patterns and lengths of the id path parameters (``validate_component``'s rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from voice_core.storage import COMPONENT_PATTERN as ID_PATTERN

ID_PARAMETERS = frozenset({"voice_id", "job_id", "name", "clip_id", "run_name", "filename", "run"})
AUDIO_TYPES = ("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav", "audio/pcm")
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "request_id"],
            "properties": {
                "message": {"type": "string", "description": "What was wrong and how to fix it."},
                "type": {"type": "string", "description": "Machine-readable kind (invalid_request_error, ...)."},
                "request_id": {"type": "string"},
            },
        }
    },
}
ERROR_DESCRIPTIONS = {
    400: "Invalid request: the message names the field and the fix.",
    401: "Missing or invalid API key (when keys are configured).",
    403: "A state-changing request from a page of another origin.",
    404: "The named object does not exist.",
    409: "The request conflicts with the object's current state.",
    413: "The body is larger than this route takes.",
    415: "The body's media type is not one this route takes.",
    503: "The service is at capacity or a replica was lost; retry after Retry-After.",
}


@dataclass(frozen=True)
class Body:
    """A request body a route reads itself.

    Attributes:
        model: the pydantic model of its fields.
        json: whether it is taken as ``application/json``.
        files: multipart file fields (name -> description).
        form: whether it is taken as a multipart form.
        files_required: whether a form must carry its file fields.
        json_required: fields the JSON form requires beyond the model's own (those a form sends as files).
    """

    model: type[BaseModel]
    json: bool = True
    files: dict[str, str] = field(default_factory=dict)
    form: bool = False
    files_required: bool = False
    json_required: tuple[str, ...] = ()


def _bodies() -> dict[tuple[str, str], Body]:
    from serve_app.datasets.protocol import DatasetRequest
    from serve_app.jobs.protocol import JobRequest
    from serve_app.speech.protocol import SpeechRequest, TTSRequest
    from serve_app.training.protocol import TrainingRequest
    from serve_app.voices.protocol import CreateVoice

    references = {"reference": "Reference recordings of the voice to clone (wav, flac, mp3, ogg, m4a ...)."}
    tts = Body(TTSRequest, files=references, form=True)
    return {
        ("/v1/audio/speech", "post"): Body(SpeechRequest),
        ("/tts", "post"): tts,
        ("/tts/stream", "post"): tts,
        ("/voices", "post"): Body(
            CreateVoice,
            json=False,
            form=True,
            files={"files": "One or more reference recordings of the voice."},
            files_required=True,
        ),
        ("/jobs", "post"): Body(JobRequest, files={"srt": "A SubRip subtitle file (UTF-8)."}, form=True),
        ("/datasets", "post"): Body(
            DatasetRequest,
            files={"files": "Recordings to build from."},
            form=True,
            files_required=True,
            json_required=("source",),
        ),
        ("/training/jobs", "post"): Body(TrainingRequest),
    }


# Routes whose 200 answer is audio, and those that reach the TTS or job-runner deployment (503 possible).
AUDIO_ROUTES = frozenset(
    {
        "/v1/audio/speech",
        "/tts",
        "/tts/stream",
        "/jobs/{job_id}/audio",
        "/datasets/{name}/clips/{clip_id}/audio",
        "/training/runs/{run_name}/samples/{filename}",
    }
)
DEPLOYMENT_ROUTES = frozenset(
    {
        ("/v1/audio/speech", "post"),
        ("/tts", "post"),
        ("/tts/stream", "post"),
        ("/voices", "post"),
        ("/voices", "get"),
        ("/jobs", "post"),
        ("/jobs/{job_id}", "delete"),
        ("/languages", "get"),
        ("/models", "get"),
        ("/health/engines", "get"),
    }
)
CONFLICT_ROUTES = frozenset(
    {
        ("/jobs/{job_id}/audio", "get"),
        ("/jobs/{job_id}", "delete"),
        ("/datasets", "post"),
        ("/training/jobs", "post"),
        ("/training/jobs/{run_name}", "delete"),
    }
)
# Operations that look objects up by a name in the body (a voice, a model, a dataset, a run).
LOOKUP_ROUTES = frozenset(
    {
        ("/v1/audio/speech", "post"),
        ("/tts", "post"),
        ("/tts/stream", "post"),
        ("/jobs", "post"),
        ("/training/jobs", "post"),
    }
)


def errors_for(path: str, method: str, has_params: bool) -> list[int]:
    """The error statuses an operation can answer with."""
    codes = [400, 413]
    if path != "/health":
        codes.append(401)
    if method in ("post", "delete"):
        codes.append(403)
    if method == "post":
        codes.append(415)
    if has_params or (path, method) in LOOKUP_ROUTES:
        codes.append(404)
    if (path, method) in CONFLICT_ROUTES:
        codes.append(409)
    if (path, method) in DEPLOYMENT_ROUTES:
        codes.append(503)
    return sorted(codes)


def _model_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return schema


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without its ``null`` alternative (``anyOf: [X, null]`` -> ``X``)."""
    options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
    if "anyOf" not in schema or len(options) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    return {**options[0], **rest}


def _request_body(body: Body, components: dict[str, Any]) -> dict[str, Any]:
    schema = _model_schema(body.model, components)
    content: dict[str, Any] = {}
    if body.json:
        reference = {"$ref": f"#/components/schemas/{body.model.__name__}"}
        if body.json_required:
            reference = {"allOf": [reference, {"required": list(body.json_required)}]}
        content["application/json"] = {"schema": reference}
    if body.form:
        # A form leaves an optional field out rather than sending null: no null in the form's schema.
        properties = {name: _not_null(value) for name, value in schema.get("properties", {}).items()}
        for name, description in body.files.items():
            # One file per part; repeat the part for several files (as HTML forms and curl -F do).
            properties[name] = {"type": "string", "format": "binary", "description": f"{description} Repeatable."}
        form_schema = {
            "type": "object",
            "properties": properties,
            "required": list(schema.get("required", [])) + (list(body.files) if body.files_required else []),
            "additionalProperties": False,
        }
        content["multipart/form-data"] = {"schema": form_schema}
    return {"required": True, "content": content}


def complete_openapi(api: FastAPI) -> dict[str, Any]:
    """Build (once) the API's OpenAPI document with bodies, errors, media types and id patterns."""
    if api.openapi_schema:
        return api.openapi_schema
    schema = get_openapi(title=api.title, version=api.version, routes=api.routes, description=api.description)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"] = ERROR_SCHEMA
    bodies = _bodies()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            params = operation.get("parameters", [])
            for param in params:
                if param.get("name") in ID_PARAMETERS:
                    param["schema"].update(pattern=ID_PATTERN, minLength=1, maxLength=128)
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            looks_up = any(p.get("in") == "path" or p.get("name") in ID_PARAMETERS for p in params)
            for code in errors_for(path, method, looks_up):
                responses[str(code)] = {
                    "description": ERROR_DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            body = bodies.get((path, method))
            if body is not None:
                operation["requestBody"] = _request_body(body, components)
            if path in AUDIO_ROUTES:
                success = next((code for code in responses if code.startswith("2")), "200")
                audio = {media: {"schema": {"type": "string", "format": "binary"}} for media in AUDIO_TYPES}
                if path == "/v1/audio/speech":
                    audio["text/event-stream"] = {"schema": {"type": "string"}}
                responses[success] = {"description": "The audio.", "content": audio}
    api.openapi_schema = schema
    return schema
