"""The web UI's page and assets are served by the ingress without an API key; everything else still needs one."""

from __future__ import annotations

import httpx

from tests.serve_app.conftest import ServiceInfo


def test_page_is_public_but_the_api_is_not(service: ServiceInfo) -> None:
    page = httpx.get(f"{service.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Audio Voice Service" in page.text
    assert httpx.get(f"{service.url}/models").status_code == 401
    assert httpx.get(f"{service.url}/ui/missing.js").status_code == 404
    assert httpx.get(f"{service.url}/ui/..%2Fapp.py").status_code in (400, 404)
    assert httpx.get(f"{service.url}/uix").status_code == 401  # only "/" and "/ui/..." are public
