"""Tests for voice_core.release and voice_core.models.resolve_model, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from voice_core.errors import (
    DownloadError,
    InvalidInputError,
    LicenseNotAcceptedError,
    ModelFilesMissingError,
    NotFoundError,
)
from voice_core.models import resolve_model
from voice_core.release import RELEASE_MODEL_ID, ensure_release
from voice_core.settings import XTTS_RELEASE_FILES, Settings
from voice_core.storage import Storage
from voice_core.tiny import TINY_MODEL_ID


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib must reach 127.0.0.1 directly, whatever proxy the outer environment sets."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


class QuietFiles(SimpleHTTPRequestHandler):
    """Static files without a log line per request; paths asked for are recorded on the server."""

    def do_GET(self) -> None:
        self.server.requested.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class ShortBody(BaseHTTPRequestHandler):
    """Declares 1000 bytes and sends 10, then closes the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server:
    """A ThreadingHTTPServer on an ephemeral 127.0.0.1 port, run in a thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler] | functools.partial) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.requested: list[str] = []
        self.httpd.requested = self.requested  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def release_source(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A directory holding exactly the six release files (taken from the tiny model)."""
    source = tmp_path_factory.mktemp("release-source")
    for name in XTTS_RELEASE_FILES:
        shutil.copyfile(tiny_model_dir / name, source / name)
    return source


@pytest.fixture
def file_server(release_source: Path) -> Iterator[Server]:
    server = Server(functools.partial(QuietFiles, directory=str(release_source)))
    yield server
    server.stop()


@pytest.fixture
def short_server() -> Iterator[Server]:
    server = Server(ShortBody)
    yield server
    server.stop()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/release"


def release_settings(storage: Storage, **values: object) -> Settings:
    return Settings.load(storage_root=storage.root, **values)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_lists_placements(message: str, directory: Path) -> None:
    for name in XTTS_RELEASE_FILES:
        assert str(directory / name) in message, name


def test_no_agreement_lists_files_and_the_variable(storage: Storage, file_server: Server) -> None:
    settings = release_settings(storage, release_url=file_server.url)
    with pytest.raises(LicenseNotAcceptedError) as info:
        ensure_release(settings, storage, progress=False)
    message = str(info.value)
    assert_lists_placements(message, storage.models / RELEASE_MODEL_ID)
    assert "AVS_COQUI_TOS_AGREED" in message
    assert file_server.requested == []
    assert not (storage.models / RELEASE_MODEL_ID).exists()


def test_offline_lists_files_and_leaves_no_partial(storage: Storage) -> None:
    settings = release_settings(storage, coqui_tos_agreed=True, release_url=closed_port_url())
    with pytest.raises(DownloadError) as info:
        ensure_release(settings, storage, progress=False)
    directory = storage.models / RELEASE_MODEL_ID
    message = str(info.value)
    assert "offline" in message
    assert_lists_placements(message, directory)
    assert list(directory.iterdir()) == []


def test_downloads_all_files_byte_identical(storage: Storage, file_server: Server, release_source: Path) -> None:
    settings = release_settings(storage, coqui_tos_agreed=True, release_url=file_server.url + "/")
    directory = ensure_release(settings, storage, progress=False)
    assert directory == storage.models / RELEASE_MODEL_ID
    assert sorted(p.name for p in directory.iterdir()) == sorted(XTTS_RELEASE_FILES)
    for name in XTTS_RELEASE_FILES:
        assert sha256(directory / name) == sha256(release_source / name), name
    json.loads((directory / "config.json").read_text())
    assert sorted(file_server.requested) == sorted(f"/{name}" for name in XTTS_RELEASE_FILES)

    file_server.stop()
    assert ensure_release(settings, storage, progress=False) == directory
    assert resolve_model(settings, storage, RELEASE_MODEL_ID) == (RELEASE_MODEL_ID, directory)


def test_downloads_only_missing_files(storage: Storage, file_server: Server, release_source: Path) -> None:
    directory = storage.models / RELEASE_MODEL_ID
    directory.mkdir()
    for name in XTTS_RELEASE_FILES[:-1]:
        shutil.copyfile(release_source / name, directory / name)
    settings = release_settings(storage, coqui_tos_agreed=True, release_url=file_server.url)
    before = {name: (directory / name).stat().st_mtime_ns for name in XTTS_RELEASE_FILES[:-1]}
    ensure_release(settings, storage, progress=False)
    assert {name: (directory / name).stat().st_mtime_ns for name in XTTS_RELEASE_FILES[:-1]} == before
    last = XTTS_RELEASE_FILES[-1]
    assert file_server.requested == [f"/{last}"]
    assert sha256(directory / last) == sha256(release_source / last)


def test_http_error_is_a_download_error(storage: Storage, tmp_path: Path) -> None:
    empty = tmp_path / "empty-source"
    empty.mkdir()
    server = Server(functools.partial(QuietFiles, directory=str(empty)))
    try:
        settings = release_settings(storage, coqui_tos_agreed=True, release_url=server.url)
        with pytest.raises(DownloadError, match=r"could not download http://127\.0\.0\.1:\d+/config\.json"):
            ensure_release(settings, storage, progress=False)
    finally:
        server.stop()
    assert list((storage.models / RELEASE_MODEL_ID).iterdir()) == []


def test_short_read_is_a_download_error(storage: Storage, short_server: Server) -> None:
    settings = release_settings(storage, coqui_tos_agreed=True, release_url=short_server.url)
    with pytest.raises(DownloadError) as info:
        ensure_release(settings, storage, progress=False)
    message = str(info.value)
    assert "got 10 of 1000 bytes" in message
    assert f"{short_server.url}/{XTTS_RELEASE_FILES[0]}" in message
    directory = storage.models / RELEASE_MODEL_ID
    assert not (directory / XTTS_RELEASE_FILES[0]).exists()
    assert list(directory.iterdir()) == []


def test_download_switched_off(storage: Storage, file_server: Server) -> None:
    settings = release_settings(storage, coqui_tos_agreed=True, download_release=False, release_url=file_server.url)
    with pytest.raises(ModelFilesMissingError) as info:
        ensure_release(settings, storage, progress=False)
    message = str(info.value)
    assert "AVS_DOWNLOAD_RELEASE=false" in message
    assert_lists_placements(message, storage.models / RELEASE_MODEL_ID)
    assert not (storage.models / RELEASE_MODEL_ID).exists()


def test_resolve_unknown_model_lists_available(settings: Settings, storage: Storage) -> None:
    (storage.models / "alpha").mkdir()
    (storage.models / "beta").mkdir()
    with pytest.raises(NotFoundError) as info:
        resolve_model(settings, storage, "gamma")
    message = str(info.value)
    assert "'gamma'" in message
    assert "available: alpha, beta" in message


def test_resolve_unknown_model_with_empty_storage(settings: Settings, storage: Storage) -> None:
    with pytest.raises(NotFoundError, match="available: none"):
        resolve_model(settings, storage, "gamma")


def test_resolve_existing_model(settings: Settings, storage: Storage) -> None:
    (storage.models / "alpha").mkdir()
    assert resolve_model(settings, storage, "alpha") == ("alpha", storage.models / "alpha")


@pytest.mark.parametrize("model_id", ["../x", "a/b", ".."])
def test_resolve_rejects_path_ids(settings: Settings, storage: Storage, model_id: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid model id"):
        resolve_model(settings, storage, model_id)


def test_resolve_default_is_base_model(settings: Settings, storage: Storage) -> None:
    with pytest.raises(LicenseNotAcceptedError):
        resolve_model(settings, storage)
    assert not (storage.models / TINY_MODEL_ID).exists()


def test_tiny_model_not_created_outside_demo_mode(settings: Settings, storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        resolve_model(settings, storage, TINY_MODEL_ID)
    assert not (storage.models / TINY_MODEL_ID).exists()


def test_demo_mode_creates_tiny_model_once(tmp_path: Path) -> None:
    settings = Settings.load(storage_root=tmp_path / "storage", demo_tiny_model=True)
    storage = Storage.from_settings(settings).ensure()
    model_id, directory = resolve_model(settings, storage)
    assert model_id == TINY_MODEL_ID
    assert directory == storage.models / TINY_MODEL_ID
    for name in XTTS_RELEASE_FILES:
        assert (directory / name).is_file(), name
    assert json.loads((directory / "manifest.json").read_text())["untrained"] is True
    stamp = (directory / "model.pth").stat().st_mtime_ns
    assert resolve_model(settings, storage) == (TINY_MODEL_ID, directory)
    assert (directory / "model.pth").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in storage.models.iterdir()) == [TINY_MODEL_ID]
