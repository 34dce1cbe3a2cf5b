"""What the routes need from the ingress replica: deployment handles and settings.

Set once by :class:`serve_app.ingress.Ingress` when its replica starts. (Serve serves a copy of
the FastAPI app, so ``app.state`` set in the constructor would not reach the routes.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voice_core.settings import Settings


@dataclass
class IngressContext:
    """Handles and settings of this ingress replica.

    Attributes:
        tts: handle of the TTS deployment.
        settings: the service settings.
        runner: handle of the job runner (None when the app was built without it).
        allowed_hosts: names the ``Host`` header may carry (None: any).
    """

    tts: Any
    settings: Settings
    runner: Any = None
    allowed_hosts: frozenset[str] | None = None


_context: IngressContext | None = None


def set_context(context: IngressContext) -> None:
    """Install the replica's context (called by the ingress constructor)."""
    global _context
    _context = context


def ctx() -> IngressContext:
    """The replica's context; raises if the ingress has not started."""
    if _context is None:
        raise RuntimeError("ingress context not set: routes are only served by the Ingress deployment")
    return _context
