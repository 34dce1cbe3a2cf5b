"""Stored voices: reference recordings plus conditioning latents computed once per model.

Layout of ``storage/voices/<voice_id>/``::

    voice.json              id, name, language, created_at, references (file, seconds)
    refs/ref_00.wav ...     the references as 22.05 kHz mono PCM16
    latents/<model_id>.pt   {"gpt_cond_latent", "speaker_embedding"} for that model

A voice is written in a temporary directory and renamed into place, so a crash never leaves a
half voice; latents for another model are computed from the references on first use and cached.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_core.encode import write_wav
from voice_core.errors import NotFoundError
from voice_core.settings import Settings
from voice_core.storage import Storage, atomic_directory, atomic_write_json, atomic_writer, validate_component

REFERENCE_RATE = 22050
LatentsFn = Callable[[list[np.ndarray]], Any]


@dataclass(frozen=True)
class VoiceChoice:
    """The voice a request asks for: its name and the built-in speaker that name maps to.

    OpenAI voice names (``alloy``...) map to built-in speakers through ``AVS_OPENAI_VOICES``; any
    other name is itself: a built-in speaker or a stored voice id.
    """

    name: str
    speaker: str

    def unknown(self, model_id: str, references_allowed: bool) -> NotFoundError:
        """The 404 for a name that is neither a speaker of ``model_id`` nor a stored voice."""
        hint = f" (OpenAI voice {self.name!r} maps to {self.speaker!r})" if self.speaker != self.name else ""
        upload = ", or upload reference audio" if references_allowed else ""
        return NotFoundError(
            f"unknown voice {self.name!r}{hint}: use a built-in speaker of model '{model_id}' or a stored "
            f"voice id (GET /voices){upload}"
        )


def choose_voice(requested: str | None, settings: Settings) -> VoiceChoice:
    """Resolve a request's ``voice`` (or the default voice) to a name and a speaker, the one place that does."""
    name = requested or settings.default_voice
    return VoiceChoice(name, settings.openai_voices.get(name, name))


class VoiceStore:
    """Create, list, read and delete stored voices under ``storage/voices``."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def create(
        self, name: str, language: str, references: list[np.ndarray], *, model_id: str, latents: Any
    ) -> dict[str, Any]:
        """Store a new voice with its references and the latents already computed for ``model_id``.

        Args:
            name: display name (free text, up to 100 characters).
            language: the voice's language code.
            references: mono float32 recordings at 22.05 kHz.
            model_id: the model the latents were computed with.
            latents: a :class:`serve_app.speech.engine.VoiceLatents`.

        Returns:
            The voice record.
        """
        voice_id = f"voice-{uuid.uuid4().hex[:12]}"
        with atomic_directory(self.storage.voice_dir(voice_id)) as work:
            refs = []
            (work / "refs").mkdir()
            for index, audio in enumerate(references):
                write_wav(work / "refs" / f"ref_{index:02d}.wav", audio, REFERENCE_RATE)
                refs.append({"file": f"refs/ref_{index:02d}.wav", "seconds": round(len(audio) / REFERENCE_RATE, 3)})
            self._save_latents(work, model_id, latents)
            record = {
                "id": voice_id,
                "name": name,
                "language": language,
                "created_at": time.time(),
                "references": refs,
                "kind": "stored",
            }
            atomic_write_json(work / "voice.json", record)
        return record

    def get(self, voice_id: str) -> dict[str, Any]:
        """Return a voice record (with the models it has latents for).

        Raises:
            NotFoundError: no such voice.
            InvalidInputError: the id is not a valid path component.
        """
        directory = self.storage.voice_dir(voice_id)
        path = directory / "voice.json"
        if not path.is_file():
            raise NotFoundError(f"voice {voice_id!r} not found; list voices with GET /voices")
        record = json.loads(path.read_text(encoding="utf-8"))
        latents_dir = directory / "latents"
        record["latents_for"] = sorted(p.stem for p in latents_dir.glob("*.pt")) if latents_dir.is_dir() else []
        return record

    def exists(self, voice_id: str) -> bool:
        """Return whether ``voice_id`` is a stored voice (False for invalid ids)."""
        try:
            validate_component(voice_id, "voice id")
        except ValueError:
            return False
        return (self.storage.voices / voice_id / "voice.json").is_file()

    def list(self) -> list[dict[str, Any]]:
        """All stored voices, oldest first."""
        if not self.storage.voices.is_dir():
            return []
        records = [
            self.get(p.name)
            for p in self.storage.voices.iterdir()
            if not p.name.startswith(".") and self.exists(p.name)
        ]
        return sorted(records, key=lambda r: (r["created_at"], r["id"]))

    def delete(self, voice_id: str) -> None:
        """Delete a voice (its directory is renamed away first, so readers never see half of it).

        Raises:
            NotFoundError: no such voice, also when a concurrent delete removed it first.
            InvalidInputError: the id is not a valid path component.
        """
        self.get(voice_id)
        directory = self.storage.voice_dir(voice_id)
        trash = directory.with_name(f".deleted-{voice_id}-{uuid.uuid4().hex[:6]}")
        try:
            directory.rename(trash)
        except FileNotFoundError:  # the rename is the one step only one of two deletes can win
            message = f"voice {voice_id!r} not found (it was just deleted); list voices with GET /voices"
            raise NotFoundError(message) from None
        shutil.rmtree(trash, ignore_errors=True)

    def latents(self, voice_id: str, model_id: str, compute: LatentsFn) -> tuple[Any, bool]:
        """Return the voice's latents for ``model_id``, computing and caching them on first use.

        Returns:
            ``(latents, computed_now)``.
        """
        import torch

        from serve_app.speech.engine import VoiceLatents

        self.get(voice_id)
        directory = self.storage.voice_dir(voice_id)
        path = directory / "latents" / f"{validate_component(model_id, 'model id')}.pt"
        if path.is_file():
            data = torch.load(path, map_location="cpu", weights_only=True)
            return VoiceLatents(data["gpt_cond_latent"], data["speaker_embedding"]), False
        from voice_core.decode import decode_audio

        record = json.loads((directory / "voice.json").read_text(encoding="utf-8"))
        references = [decode_audio(directory / ref["file"], REFERENCE_RATE) for ref in record["references"]]
        latents = compute(references)
        self._save_latents(directory, model_id, latents)
        return latents, True

    @staticmethod
    def _save_latents(directory: Path, model_id: str, latents: Any) -> None:
        import torch

        target = directory / "latents" / f"{validate_component(model_id, 'model id')}.pt"
        with atomic_writer(target) as handle:
            torch.save(
                {"gpt_cond_latent": latents.gpt_cond_latent, "speaker_embedding": latents.speaker_embedding}, handle
            )
