"""Browser fixtures: the real service (shared with tests/serve_app when it already runs) and headless Chromium.

Chromium is Debian's ``/usr/bin/chromium`` (``./run.sh test`` installs it); Playwright never downloads a
browser here.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, wait_for_http
from tests.serve_app.conftest import API_KEY, ServiceInfo, app_args

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
APP_NAME = "voice"


def _running_service() -> ServiceInfo | None:
    """The service tests/serve_app's session fixture deployed on this Ray, if it is up."""
    from ray import serve
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None or APP_NAME not in serve.status().applications:
        return None
    url = f"http://127.0.0.1:{client.http_config.port}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    logdir = httpx.get(f"{url}/training/tensorboard", headers=headers, timeout=30).json()["logdir"]
    return ServiceInfo(url=url, storage=Path(logdir).parent, api_key=API_KEY)


@pytest.fixture(scope="module")
def service(ray_session: int, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceInfo]:
    """The whole application over real HTTP (tiny model, API key ``test-key-123``).

    One Serve instance per Ray cluster: when tests/serve_app's session ``service`` is already deployed,
    it is reused; otherwise the same application is deployed here and shut down after the module, so a
    later tests/serve_app module can deploy its own.
    """
    from ray import serve

    from serve_app.app import build_app

    running = _running_service()
    if running is not None:
        yield running
        return
    storage = tmp_path_factory.mktemp("ui-service") / "storage"
    (storage / "models").mkdir(parents=True)
    shutil.copytree(tiny_model_dir, storage / "models" / "tiny-xtts")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(app_args(storage)), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", 60)
    try:
        yield ServiceInfo(url=url, storage=storage, api_key=API_KEY)
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (a fake microphone that needs no permission prompt)."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium (./run.sh test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--autoplay-policy=no-user-gesture-required",
                "--no-sandbox",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, service: ServiceInfo) -> Iterator[object]:
    """A fresh tab (own sessionStorage) at the page, wide desktop viewport; browser console errors fail the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=service.url)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    try:
        yield tab
    finally:
        context.close()
    assert not problems, problems


def enter_key(page, key: str = API_KEY) -> None:
    """Answer the page's API-key dialog."""
    page.locator("#key-dialog").wait_for(state="visible")
    page.fill("#key-input", key)
    page.click("#key-save")


@pytest.fixture
def ready_page(page, service: ServiceInfo):
    """The page with the API key entered and the shared lists loaded."""
    page.goto("/#speak")
    enter_key(page)
    page.locator("#speak-language option").first.wait_for(state="attached")
    page.locator("#speak-profile option").first.wait_for(state="attached")
    return page


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG under test-artifacts/ui/ and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
