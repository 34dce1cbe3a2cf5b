"""The web UI's page and assets are served by the ingress without an API key; everything else still needs one."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.serve_app.conftest import ServiceInfo

UI_DIR = Path(__file__).resolve().parents[2] / "serve_app" / "ui"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def test_page_is_public_but_the_api_is_not(service: ServiceInfo) -> None:
    page = httpx.get(f"{service.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Audio Voice Service" in page.text
    assert httpx.get(f"{service.url}/models").status_code == 401
    assert httpx.get(f"{service.url}/ui/missing.js").status_code == 404
    assert httpx.get(f"{service.url}/ui/..%2Fapp.py").status_code in (400, 404)
    assert httpx.get(f"{service.url}/uix").status_code == 401  # only "/" and "/ui/..." are public


def test_every_asset_is_served_with_its_type(service: ServiceInfo) -> None:
    assets = [p for p in UI_DIR.iterdir() if p.suffix in TYPES]
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in assets}
    for path in assets:
        response = httpx.get(f"{service.url}/ui/{path.name}")
        assert response.status_code == 200, path.name
        assert response.headers["content-type"].startswith(TYPES[path.suffix]), path.name
        assert response.content == path.read_bytes()


def test_the_page_needs_no_network_beyond_the_service() -> None:
    """No CDN: scripts, styles and module imports are local; no RVC or F5-TTS anywhere."""
    for path in UI_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']https?://""", text), path.name
        assert not re.search(r"""import .* from ["'](?!\./)""", text), path.name
        assert not re.search(r"\b(RVC|F5-?TTS)\b", text, re.IGNORECASE), path.name
