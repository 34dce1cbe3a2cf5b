"""The ingress middleware in-process (no Ray): request ids, API keys, JSON errors, metrics, streams.

The routes reach a fake TTS handle, so these run in a fraction of a second; the same behaviour is
checked over real HTTP through Serve in ``test_speech_api.py`` and ``test_bad_input.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from serve_app import context, ingress
from serve_app.speech import metrics
from serve_app.speech.protocol import SynthesisRequest, SynthesisResult
from voice_core.errors import OverloadedError, ReplicaLostError
from voice_core.settings import Settings

API_KEY = "unit-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Hello.", "response_format": "pcm"}
CHUNKS = [b"\x01\x02" * 8, b"\x03\x04" * 8]


class RayWrapped(Exception):
    """Stands for Ray's RayTaskError, which carries the replica's exception as ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def result() -> SynthesisResult:
    return SynthesisResult(b"", "audio/pcm", 24000, "tiny-xtts", "tiny-xtts", None, 7, "en", "alloy")


class Method:
    """One handle method: ``.remote(...)`` gives an awaitable, or an async generator for streams."""

    def __init__(self, fake: FakeTTS, name: str) -> None:
        self.fake, self.name = fake, name

    def remote(self, *args: Any) -> Any:
        self.fake.calls.append(self.name)
        if self.name == "stream":
            return self._stream()
        return self._call()

    async def _call(self) -> Any:
        if self.fake.error is not None:
            raise self.fake.error
        if self.name == "info":
            return {"languages": ["en", "pt"], "loaded_models": []}
        whole = result()
        whole.audio = b"".join(CHUNKS)
        return whole

    async def _stream(self) -> AsyncIterator[SynthesisResult | bytes]:
        if self.fake.error is not None:
            raise self.fake.error
        yield result()
        for chunk in CHUNKS:
            yield chunk


class FakeTTS:
    """Stands for the TTS deployment handle."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.calls: list[str] = []

    def options(self, **_: Any) -> FakeTTS:
        return self

    def __getattr__(self, name: str) -> Method:
        return Method(self, name)


@pytest.fixture
def tts(tmp_path: Path) -> Iterator[FakeTTS]:
    fake = FakeTTS()
    settings = Settings.load(storage_root=tmp_path / "storage", demo_tiny_model=True, api_keys=API_KEY)
    saved = context._context
    context.set_context(context.IngressContext(tts=fake, settings=settings))
    yield fake
    context._context = saved


@pytest.fixture
def client(tts: FakeTTS) -> Iterator[TestClient]:
    with TestClient(ingress.api) as http:
        yield http


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(metrics, "record_request", lambda *args: calls.append(args))
    return calls


def error_of(response: Any, status: int, error_type: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "request_id"}
    assert error["type"] == error_type
    return error


def test_health_needs_no_key_and_counts(client: TestClient, recorded: list[tuple]) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    [(route, status, seconds, error_type)] = recorded
    assert (route, status, error_type) == ("/health", 200, None)
    assert 0 <= seconds < 5


def test_missing_key_is_a_json_401_with_the_callers_request_id(
    client: TestClient, tts: FakeTTS, recorded: list[tuple]
) -> None:
    response = client.post("/tts", json={"text": "Hi."}, headers={"x-request-id": "req-123"})
    error = error_of(response, 401, "unauthorized")
    assert error["request_id"] == "req-123"
    assert "Authorization: Bearer" in error["message"]
    assert response.headers["www-authenticate"] == "Bearer"
    assert tts.calls == []
    assert [(r[0], r[1], r[3]) for r in recorded] == [("unmatched", 401, "unauthorized")]


def test_wrong_key_is_refused(client: TestClient) -> None:
    error_of(client.get("/languages", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")


def test_request_id_is_made_when_the_caller_sends_none(client: TestClient) -> None:
    error = error_of(client.get("/no/such/route", headers=AUTH), 404, "not_found")
    assert len(error["request_id"]) == 32 and int(error["request_id"], 16) >= 0
    assert "GET /no/such/route" in error["message"]


def test_validation_error_is_a_400_naming_the_field(client: TestClient, recorded: list[tuple]) -> None:
    response = client.post("/v1/audio/speech", json={**SPEECH, "speed": 9}, headers={**AUTH, "x-request-id": "r1"})
    error = error_of(response, 400, "invalid_request_error")
    assert "'speed'" in error["message"]
    assert error["request_id"] == "r1"
    assert [(r[0], r[1], r[3]) for r in recorded] == [("/v1/audio/speech", 400, "invalid_request_error")]


def test_project_error_from_the_replica_keeps_status_and_retry_after(
    client: TestClient, tts: FakeTTS, recorded: list[tuple]
) -> None:
    tts.error = RayWrapped(OverloadedError("the service is at capacity; retry"))
    response = client.post("/tts", json={"text": "Hi."}, headers=AUTH)
    error = error_of(response, 503, OverloadedError.error_type)
    assert "capacity" in error["message"]
    assert response.headers["retry-after"] == "1"
    assert [(r[0], r[1], r[3]) for r in recorded] == [("/tts", 503, OverloadedError.error_type)]


def test_replica_lost_mid_request_is_a_503_to_retry(client: TestClient, tts: FakeTTS, recorded: list[tuple]) -> None:
    from ray.exceptions import ActorDiedError

    tts.error = ActorDiedError()
    response = client.post("/tts", json={"text": "Hi."}, headers=AUTH)
    error = error_of(response, 503, ReplicaLostError.error_type)
    assert "retry" in error["message"]
    assert response.headers["retry-after"] == "1"
    assert [(r[0], r[1], r[3]) for r in recorded] == [("/tts", 503, ReplicaLostError.error_type)]


def test_unexpected_error_is_a_500_that_hides_the_details(client: TestClient, tts: FakeTTS) -> None:
    tts.error = RuntimeError("secret internal detail")
    response = client.get("/languages", headers=AUTH)
    error = error_of(response, 500, "internal_error")
    assert "secret" not in response.text
    assert "service log" in error["message"]


def test_whole_synthesis_passes_through(client: TestClient, tts: FakeTTS) -> None:
    response = client.post("/tts", json={"text": "Hi.", "format": "pcm"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.content == b"".join(CHUNKS)
    assert response.headers["x-model-used"] == "tiny-xtts"
    assert tts.calls == ["synthesize"]


def test_stream_passes_through_every_chunk(client: TestClient, tts: FakeTTS, recorded: list[tuple]) -> None:
    response = client.post("/v1/audio/speech", json=SPEECH, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.content == b"".join(CHUNKS)
    assert response.headers["x-seed"] == "7"
    assert tts.calls == ["stream"]
    assert [(r[0], r[1], r[3]) for r in recorded] == [("/v1/audio/speech", 200, None)]


def test_stream_failing_before_its_first_chunk_is_a_json_error(client: TestClient, tts: FakeTTS) -> None:
    tts.error = RayWrapped(OverloadedError("full"))
    error_of(client.post("/v1/audio/speech", json=SPEECH, headers=AUTH), 503, OverloadedError.error_type)


def test_synthesis_request_reaches_the_handle_unchanged(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SynthesisRequest] = []
    fake = context.ctx().tts

    class Recording(Method):
        def remote(self, *args: Any) -> Any:
            seen.extend(args)
            return super().remote(*args)

    monkeypatch.setattr(FakeTTS, "__getattr__", lambda self, name: Recording(fake, name))
    body = {"text": "Hi there.", "format": "pcm", "seed": 3, "voice": "alloy", "temperature": 0.5}
    assert client.post("/tts", json=body, headers=AUTH).status_code == 200
    [request] = seen
    assert (request.text, request.response_format, request.seed, request.voice) == ("Hi there.", "pcm", 3, "alloy")
    assert request.overrides == {"temperature": 0.5}
