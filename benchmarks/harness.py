"""What every benchmark stands on: a private Ray, the tiny model under a temporary storage root, and
the Serve application reached over real HTTP.

Nothing here touches a Ray cluster, storage or port that someone else may be using: Ray runs with
its own ``RAY_TMPDIR`` (short, because Ray's socket paths are length-limited) and free ports, and
everything is removed on the way out.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import Response

API_KEY = "bench-key"
SEED = 1234
# An OpenAI voice name: it maps to a built-in speaker of the tiny model, so no latents are computed.
VOICE = "alloy"
RAY_CPUS = 4
TTS_NUM_CPUS = 1.0
READY_TIMEOUT_S = 180.0
# The Serve-only floor application (serve_floor_app), deployed next to the service on the same Serve instance.
FLOOR_APP = "serve-floor"
FLOOR_PREFIX = "/serve-floor"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def replica_torch_threads(num_cpus: float) -> int:
    """Torch threads a replica with ``num_cpus`` gets (Ray sets ``OMP_NUM_THREADS`` to floor(num_cpus), at least 1)."""
    return max(math.floor(num_cpus), 1)


@contextlib.contextmanager
def private_ray(num_cpus: int = RAY_CPUS) -> Iterator[None]:
    """Start a local Ray of our own (no dashboard, private temp dir, free metrics port); stop it after."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="avs-b-", dir="/tmp")
    saved = {key: os.environ.get(key) for key in ("RAY_TMPDIR", "RAY_ADDRESS")}
    os.environ["RAY_TMPDIR"] = temp_dir
    os.environ.pop("RAY_ADDRESS", None)
    logging.getLogger("ray").setLevel(logging.WARNING)
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _metrics_export_port=free_port())
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp_dir, ignore_errors=True)


def make_storage(root: Path, extra_models: dict[str, Any] | None = None) -> Path:
    """A storage root holding the tiny model (and any extra tiny models by id -> ``TinyModelSpec``)."""
    from voice_core.tiny import TINY_MODEL_ID, make_tiny_model

    storage = root / "storage"
    make_tiny_model(storage / "models" / TINY_MODEL_ID)
    for model_id, spec in (extra_models or {}).items():
        make_tiny_model(storage / "models" / model_id, spec)
    return storage


def app_args(storage: Path, **tts: Any) -> dict[str, Any]:
    """Builder arguments: one TTS replica on one CPU, the tiny model in demo mode, API keys on."""
    return {
        "ingress_num_cpus": 0.1,
        "tts": {
            "num_cpus": TTS_NUM_CPUS,
            "autoscaling": {"min_replicas": 1, "max_replicas": 1},
            **tts,
        },
        "settings": {"storage_root": str(storage), "demo_tiny_model": True, "api_keys": API_KEY},
    }


@dataclass(frozen=True)
class Service:
    """The deployed application."""

    url: str
    args: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {API_KEY}"}

    def client(self, timeout_s: float = 300.0) -> httpx.Client:
        """A keep-alive HTTP client with the API key set."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout_s)

    def async_client(self, connections: int, timeout_s: float = 600.0) -> httpx.AsyncClient:
        """An async client allowing ``connections`` simultaneous connections."""
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout_s, limits=limits)


def _wait_ready(url: str, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < end:
        try:
            response = httpx.get(f"{url}/health", timeout=5)
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"{url}/health did not answer 200 within {deadline_s:.0f} s (last: {last!r})")


@contextlib.contextmanager
def deployed(storage: Path, **tts: Any) -> Iterator[Service]:
    """Deploy ``build_app`` on the current Ray with Serve's HTTP proxy on a free local port."""
    from ray import serve

    from serve_app.app import build_app

    args = app_args(storage, **tts)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(args), name="voice-bench", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, READY_TIMEOUT_S)
        yield Service(url=url, args=args)
    finally:
        serve.shutdown()


def serve_floor_app() -> Any:
    """A Serve application with none of the service's code in it: Serve's own cost per request here.

    ``GET /plain`` is answered by the ingress replica; ``GET /call`` also makes one handle call to an
    empty deployment; ``POST /call?size=N`` reads a JSON body and makes one handle call that returns
    ``N`` bytes, sent back as the body (the shape of ``POST /tts``, with no work in it).
    Deployments take 0.1 CPU each, like the service's ingress.
    """
    from fastapi import FastAPI
    from ray import serve

    api = FastAPI()
    handles: dict[str, Any] = {}

    def empty() -> Any:
        # Looked up in the replica on first use: a handle cannot travel inside the pickled FastAPI app.
        if "empty" not in handles:
            handles["empty"] = serve.get_deployment_handle("FloorEmpty", app_name=FLOOR_APP)
        return handles["empty"]

    @api.get("/plain")
    async def plain() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/call")
    async def call() -> dict[str, str]:
        return {"status": await empty().ping.remote()}

    @api.post("/call")  # Request and Response are imported at module level: FastAPI resolves the annotations there
    async def call_with_body(request: Request, size: int) -> Response:
        await request.json()
        return Response(await empty().audio.remote(size), media_type="audio/pcm")

    @serve.deployment(name="FloorEmpty", ray_actor_options={"num_cpus": 0.1})
    class FloorEmpty:
        async def ping(self) -> str:
            return "ok"

        async def audio(self, size: int) -> bytes:
            return bytes(size)

    @serve.deployment(name="FloorIngress", ray_actor_options={"num_cpus": 0.1})
    @serve.ingress(api)
    class FloorIngress:
        def __init__(self, empty: Any) -> None:
            self.empty = empty  # binding it makes FloorEmpty part of the application

    return FloorIngress.bind(FloorEmpty.bind())


@dataclass(frozen=True)
class Bench:
    """A running benchmark service and its scratch space."""

    service: Service
    storage: Path
    work: Path


@contextlib.contextmanager
def bench_service(extra_models: dict[str, Any] | None = None, **tts: Any) -> Iterator[Bench]:
    """Tiny model(s) in a temporary storage root, a private Ray and the app; all removed afterwards.

    Args:
        extra_models: more tiny models to put in storage, model id -> ``TinyModelSpec``.
        **tts: overrides of the TTS deployment arguments (``max_queued_requests=64``...).
    """
    root = Path(tempfile.mkdtemp(prefix="avs-bench-"))
    try:
        storage = make_storage(root, extra_models)
        work = root / "work"
        work.mkdir()
        with private_ray(), deployed(storage, **tts) as service:
            yield Bench(service=service, storage=storage, work=work)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def load_local_engine(storage: Path, model_id: str | None = None) -> Any:
    """Load the same model in this process, on as many torch threads as the TTS replica has.

    Returns:
        ``(engine, settings)``.
    """
    import torch

    from serve_app.speech.service import load_engine
    from voice_core.settings import Settings

    torch.set_num_threads(replica_torch_threads(TTS_NUM_CPUS))
    settings = Settings.load(storage_root=storage, demo_tiny_model=True)
    return load_engine(settings, model_id), settings


def espeak_wav(path: Path, text: str, voice: str = "en-us") -> Path:
    """Speak ``text`` into the WAV ``path`` with espeak-ng."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed; install it with: apt-get install -y espeak-ng")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Call ``fn`` and return ``(seconds, result)``."""
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value


def expect_ok(response: httpx.Response) -> httpx.Response:
    """Raise with the body when a benchmark request did not succeed (a broken run must not look fast)."""
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} -> {response.status_code}: {response.text[:500]}"
        )
    return response
