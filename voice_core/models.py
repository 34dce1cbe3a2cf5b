"""Model ids: which directory a requested id means, and which ids exist."""

from __future__ import annotations

from pathlib import Path

from voice_core.errors import NotFoundError
from voice_core.release import RELEASE_MODEL_ID, ensure_release
from voice_core.settings import Settings
from voice_core.storage import Storage
from voice_core.tiny import TINY_MODEL_ID, make_tiny_model


def available_models(storage: Storage) -> list[str]:
    """Return the ids of the directories under ``models/`` (sorted)."""
    if not storage.models.is_dir():
        return []
    return sorted(p.name for p in storage.models.iterdir() if p.is_dir() and not p.name.startswith("."))


def default_model_id(settings: Settings) -> str:
    """The id used when a request names no model (the tiny model in demo mode)."""
    return TINY_MODEL_ID if settings.demo_tiny_model else settings.base_model


def resolve_model(settings: Settings, storage: Storage, model_id: str | None = None) -> tuple[str, Path]:
    """Map a model id to its directory.

    The official release id fetches missing files when the licence was agreed to
    (:func:`voice_core.release.ensure_release`); the tiny model id is created on demand only in
    demo mode. Nothing falls back to another model here.

    Args:
        settings: the service settings.
        storage: the storage layout.
        model_id: the requested id; None means :func:`default_model_id`.

    Returns:
        ``(model_id, directory)``.

    Raises:
        NotFoundError: no such model; the message lists the available ids.
        InvalidInputError: the id is not a valid path component.
    """
    model_id = model_id or default_model_id(settings)
    directory = storage.model_dir(model_id)
    if model_id == TINY_MODEL_ID and settings.demo_tiny_model and not directory.exists():
        make_tiny_model(directory)
    if model_id == RELEASE_MODEL_ID:
        return model_id, ensure_release(settings, storage)
    if not directory.exists() and not directory.is_symlink():
        known = ", ".join(available_models(storage)) or "none"
        raise NotFoundError(
            f"model {model_id!r} not found in storage/models (available: {known}); export a model with "
            "`python -m train_jobs export` or copy a model directory there"
        )
    return model_id, directory
