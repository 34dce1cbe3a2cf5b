"""Deploying the service on a private test cluster (:mod:`tests.ray_head`) and watching it from outside.

The application is deployed the way an operator does it, through the head's Serve REST API (what
``serve deploy`` calls) with ``import_path: serve_app.app:build_app``; its replicas are observed through
the same API (``GET /api/serve/applications/``: per replica its state and node id). The test process
itself never joins the cluster, so these tests also run next to the in-process session Ray.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.ray_head import RayHead

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ops"
API_KEY = "ops-test-key"
T = TypeVar("T")


def storage_with_tiny_model(root: Path, tiny_model_dir: Path) -> Path:
    """A storage root under ``root`` holding the tiny model as ``models/tiny-xtts``."""
    storage = root / "storage"
    (storage / "models").mkdir(parents=True)
    shutil.copytree(tiny_model_dir, storage / "models" / "tiny-xtts")
    return storage


def ops_app_args(storage: Path, tts: dict[str, Any], **settings: object) -> dict[str, Any]:
    """Builder arguments: small CPU shares for ingress and job runner, the given TTS options, tiny model."""
    return {
        "ingress_num_cpus": 0.1,
        "tts": {"health_check_period_s": 2, **tts},
        "jobs": {"num_cpus": 0.1, "max_concurrent_jobs": 2},
        "settings": {"storage_root": str(storage), "demo_tiny_model": True, "api_keys": API_KEY, **settings},
    }


def deploy(head: RayHead, http_port: int, app_name: str, args: dict[str, Any], proxy: str = "HeadOnly") -> None:
    """PUT a Serve config with one application of the service to the head (as ``serve deploy`` does)."""
    config = {
        "proxy_location": proxy,
        "http_options": {"host": "127.0.0.1", "port": http_port},
        "applications": [
            {"name": app_name, "route_prefix": "/", "import_path": "serve_app.app:build_app", "args": args}
        ],
    }
    request = urllib.request.Request(
        f"{head.dashboard_url}/api/serve/applications/",
        data=json.dumps(config).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200, response.read()


def serve_details(head: RayHead) -> dict[str, Any]:
    """Serve's view of the cluster (``ServeInstanceDetails`` as JSON)."""
    with urllib.request.urlopen(f"{head.dashboard_url}/api/serve/applications/", timeout=30) as response:
        return json.loads(response.read())


def deployment(head: RayHead, app_name: str, name: str) -> dict[str, Any] | None:
    """One deployment's details (``status``, ``target_num_replicas``, ``replicas``), or None before it exists."""
    app = serve_details(head).get("applications", {}).get(app_name)
    return None if app is None else app.get("deployments", {}).get(name)


def replicas(head: RayHead, app_name: str, name: str, state: str | None = "RUNNING") -> list[dict[str, Any]]:
    """Replicas of a deployment (``replica_id``, ``state``, ``node_id``, ``pid``), only those in ``state``."""
    details = deployment(head, app_name, name)
    found = details["replicas"] if details else []
    return [r for r in found if state is None or r["state"] == state]


def actors(head: RayHead, key: str, value: str) -> list[dict[str, Any]]:
    """Actors whose ``key`` equals ``value`` in the state API, with details (``state``, ``node_id``, ``pid``,
    ``class_name``, ``required_resources``, ...)."""
    query = urllib.parse.urlencode({"filter_keys": key, "filter_predicates": "=", "filter_values": value})
    with urllib.request.urlopen(f"{head.dashboard_url}/api/v0/actors?{query}&detail=1", timeout=30) as response:
        return json.loads(response.read())["data"]["result"]["result"]


def actor_state(head: RayHead, actor_name: str) -> str | None:
    """State of a named actor (``PENDING_CREATION``, ``ALIVE``, ``DEAD``, ...), or None."""
    found = actors(head, "name", actor_name)
    return found[-1]["state"] if found else None


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 1.0) -> T:
    """Call ``condition`` until it returns something truthy and return that.

    Raises:
        TimeoutError: it never did within ``timeout_s`` (``what`` names the condition).
    """
    end = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            value = None
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"waited {timeout_s}s for {what}")
        time.sleep(interval_s)


def post(url: str, body: dict[str, Any], timeout_s: float) -> tuple[int, bytes, str]:
    """POST JSON with the test API key; returns ``(status, body, content type)``, HTTP errors included."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("content-type", "")


def get(url: str, timeout_s: float = 10.0) -> tuple[int, Any]:
    """GET JSON with the test API key; returns ``(status, parsed body)``, HTTP errors included."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def write_artifact(name: str, record: dict[str, Any]) -> Path:
    """Write ``record`` as ``test-artifacts/ops/<name>`` (JSON) and return the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path
