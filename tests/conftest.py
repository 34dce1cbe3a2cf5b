"""Shared fixtures: the tiny model (built once per session), espeak-ng speech, a storage root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from voice_core.settings import Settings
from voice_core.storage import Storage


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight XTTS model in release layout. Read-only: copy it before changing it."""
    from voice_core.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-xtts")


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model's inference files (no dvae.pth), safe to damage."""
    target = tmp_path / "model-copy"
    target.mkdir()
    for path in tiny_model_dir.iterdir():
        if path.name != "dvae.pth":
            shutil.copyfile(path, target / path.name)
    return target


def espeak(path: Path, text: str, voice: str = "en-us") -> Path:
    """Speak ``text`` into the WAV ``path`` with espeak-ng and return the path."""
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About three seconds of English speech from espeak-ng (22.05 kHz mono WAV)."""
    return espeak(
        tmp_path_factory.mktemp("speech") / "reference.wav",
        "Hello there. This is a short reference recording for the voice service.",
    )


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with a private storage root and no .env from the working directory."""
    monkeypatch.chdir(tmp_path)
    return Settings.load(storage_root=tmp_path / "storage")


@pytest.fixture
def storage(settings: Settings) -> Storage:
    """The storage layout under the private root, areas created."""
    return Storage.from_settings(settings).ensure()


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (4 logical CPUs, private temp dir, no dashboard UI).

    Yields:
        The metrics export port of the node (Prometheus text at ``http://127.0.0.1:<port>/metrics``).
    """
    import os
    import tempfile

    import ray

    from tests.helpers import free_port

    temp_dir = tempfile.mkdtemp(prefix="avs-ray-", dir="/tmp")  # short: Ray's socket paths are length-limited
    os.environ["RAY_TMPDIR"] = temp_dir
    os.environ.pop("RAY_ADDRESS", None)
    metrics_port = free_port()
    # Metrics leave each process every second instead of Ray's default 10 s: a test run of a few seconds
    # would otherwise finish (and its gauges vanish) before they were ever exported.
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _metrics_export_port=metrics_port,
        _system_config={"metrics_report_interval_ms": 1000},
        log_to_driver=False,
    )
    try:
        yield metrics_port
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def decoder_pool(monkeypatch: pytest.MonkeyPatch):
    """A private pool of two decoder children behind ``decode_untrusted``, closed after the test."""
    from voice_core import isolated

    private = isolated.DecoderPool(workers=2)
    monkeypatch.setattr(isolated, "_pool", private)
    yield private
    private.close()
