"""One error hierarchy for the whole project.

Every error carries the HTTP status it maps to and a stable ``error_type`` string, and its message
says what was wrong and how to fix it. Subclasses also inherit the matching builtin exception so
callers outside the service can catch them the ordinary way.
"""

from __future__ import annotations


class VoiceError(Exception):
    """Base class of all errors raised on purpose by this project.

    Attributes:
        status_code: HTTP status the API answers with.
        error_type: short machine-readable kind, used in JSON error bodies.
    """

    status_code: int = 500
    error_type: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(VoiceError, ValueError):
    """A setting or configuration file is invalid."""

    status_code = 500
    error_type = "config_error"


class InvalidInputError(VoiceError, ValueError):
    """Input from a user (HTTP body, CLI argument, path component) is invalid."""

    status_code = 400
    error_type = "invalid_request_error"


class PayloadTooLargeError(InvalidInputError):
    """An upload is larger than the configured limit."""

    status_code = 413
    error_type = "payload_too_large"


class UnauthorizedError(VoiceError, PermissionError):
    """A request lacks a valid API key."""

    status_code = 401
    error_type = "unauthorized"


class ForbiddenError(VoiceError, PermissionError):
    """The request is refused whatever its key (a page of another origin posting to the service)."""

    status_code = 403
    error_type = "forbidden"


class UnsupportedMediaTypeError(InvalidInputError):
    """The body is sent with a media type the route does not take."""

    status_code = 415
    error_type = "unsupported_media_type"


class OverloadedError(VoiceError, RuntimeError):
    """The service's queues are full; the caller should retry later."""

    status_code = 503
    error_type = "overloaded"


class ReplicaLostError(VoiceError, RuntimeError):
    """The replica working on the request died (its process or its node was lost); a retry goes to another."""

    status_code = 503
    error_type = "replica_lost"


class NotFoundError(VoiceError, LookupError):
    """A requested object (model, voice, job, dataset, run) does not exist."""

    status_code = 404
    error_type = "not_found"


class ConflictError(VoiceError, RuntimeError):
    """The request conflicts with the object's current state (a job's audio before the job finished)."""

    status_code = 409
    error_type = "conflict"


class AudioDecodeError(InvalidInputError):
    """Bytes or a file could not be decoded as audio."""

    error_type = "invalid_audio"


class ModelError(VoiceError, RuntimeError):
    """A model directory or checkpoint cannot be used."""

    status_code = 500
    error_type = "model_error"


class ModelFilesMissingError(ModelError, FileNotFoundError):
    """Files a model needs are absent from its directory."""

    error_type = "model_files_missing"


class DanglingSymlinkError(ModelError, FileNotFoundError):
    """A model file is a symlink whose target does not exist or lies outside the allowed roots."""

    error_type = "dangling_symlink"


class CorruptCheckpointError(ModelError):
    """A weights file is unreadable, truncated or not a checkpoint at all."""

    error_type = "corrupt_checkpoint"


class CheckpointMismatchError(ModelError):
    """A checkpoint's tensors do not fit the model its config describes."""

    error_type = "checkpoint_mismatch"


class LicenseNotAcceptedError(ModelError):
    """The official weights were requested but the user has not agreed to the Coqui licence."""

    status_code = 503
    error_type = "license_not_accepted"


class DownloadError(ModelError):
    """Fetching the official release failed (offline, HTTP error, short read)."""

    status_code = 503
    error_type = "download_failed"
