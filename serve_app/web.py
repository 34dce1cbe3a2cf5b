"""The web UI: one static page (HTML, JS, CSS from ``serve_app/ui/``) served by the ingress, no CDN."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from voice_core.errors import NotFoundError
from voice_core.storage import validate_component

router = APIRouter()
UI_DIR = Path(__file__).resolve().parent / "ui"
MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The single-page app."""
    return FileResponse(UI_DIR / "index.html", media_type="text/html")


@router.get("/ui/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """A static asset of the page."""
    path = UI_DIR / validate_component(name, "asset")
    if not path.is_file() or path.suffix not in MEDIA_TYPES:
        raise NotFoundError(f"no UI asset {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix])
