"""The TTS deployment: owns one XTTS model per replica."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from ray import serve

from voice_core.settings import Settings

log = logging.getLogger(__name__)


@serve.deployment(name="TTSDeployment")
class TTSDeployment:
    """Loads the configured XTTS model on the replica's device and reports on it."""

    def __init__(self, settings: Settings) -> None:
        from voice_core.models import resolve_model
        from voice_core.storage import Storage
        from voice_core.xtts_model import load_xtts

        self._settings = settings
        storage = Storage.from_settings(settings).ensure()
        model_id, directory = resolve_model(settings, storage)
        self._model, self._report = load_xtts(
            directory, model_id=model_id, device=settings.device, allowed_roots=storage.allowed_roots()
        )
        self._started = time.time()
        self._last_error: str | None = None

    def info(self) -> dict[str, Any]:
        """Return the model's load report plus replica details, for ``/health/engines``."""
        context = serve.get_replica_context()
        return {
            "status": "ok",
            "replica": context.replica_id.unique_id,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self._started, 1),
            "last_error": self._last_error,
            "model": self._report.to_dict(),
        }

    def check_health(self) -> None:
        """Fail the Serve health check when the model object is gone or unusable."""
        if self._model is None or next(self._model.parameters(), None) is None:
            raise RuntimeError("the XTTS model is not loaded on this replica")
