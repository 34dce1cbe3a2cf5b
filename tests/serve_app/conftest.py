"""The Serve application on the session's Ray, with the tiny model, API keys on and small queues."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for_http

API_KEY = "test-key-123"
# Small on purpose: the backpressure test overfills them.
TTS_MAX_ONGOING = 2
TTS_MAX_QUEUED = 3


@dataclass(frozen=True)
class ServiceInfo:
    """Where the test service answers and where it keeps its data."""

    url: str
    storage: Path
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header for the service."""
        return {"Authorization": f"Bearer {self.api_key}"}


def app_args(storage: Path, **settings: object) -> dict:
    """Builder arguments for tests: fractional CPUs, one TTS replica, the tiny model in demo mode."""
    return {
        "ingress_num_cpus": 0.1,
        "tts": {
            "num_cpus": 0.5,
            "max_ongoing_requests": TTS_MAX_ONGOING,
            "max_queued_requests": TTS_MAX_QUEUED,
            "autoscaling": {"min_replicas": 1, "max_replicas": 1},
            "health_check_period_s": 2,
        },
        "jobs": {"num_cpus": 0.1, "max_concurrent_jobs": 1},
        "settings": {"storage_root": str(storage), "demo_tiny_model": True, "api_keys": API_KEY, **settings},
    }


@pytest.fixture(scope="session")
def service(ray_session: int, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ServiceInfo:
    """The whole application deployed with ``serve.run`` and reachable over real HTTP."""
    from ray import serve

    from serve_app.app import build_app

    storage = tmp_path_factory.mktemp("service") / "storage"
    (storage / "models").mkdir(parents=True)
    shutil.copytree(tiny_model_dir, storage / "models" / "tiny-xtts")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(app_args(storage)), name="voice", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", 60)
    yield ServiceInfo(url=url, storage=storage, api_key=API_KEY)
    serve.shutdown()
