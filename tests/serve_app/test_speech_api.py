"""The HTTP API over real HTTP: info routes, /tts, /tts/stream, /v1/audio/speech, determinism,
backpressure, API keys and metrics. Runs against the session's tiny-model service.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tests.conftest import espeak
from tests.serve_app.conftest import TTS_MAX_ONGOING, TTS_MAX_QUEUED
from voice_core.decode import decode_audio

pytestmark = pytest.mark.slow

SAMPLE_RATE = 24000
TIMEOUT = httpx.Timeout(120.0, connect=10.0)


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=TIMEOUT) as http:
        yield http


@pytest.fixture(scope="module")
def reference_wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("speech-api") / "reference.wav"
    return espeak(path, "Good morning. This recording is the reference voice for a cloning test.").read_bytes()


def assert_error(response: httpx.Response, status: int, error_type: str, *words: str) -> dict:
    """Check the project's JSON error shape and that the message names ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "request_id"}
    assert error["type"] == error_type
    assert error["request_id"] == response.headers["x-request-id"]
    for word in words:
        assert word in error["message"], error["message"]
    return error


def decoded_seconds(data: bytes) -> float:
    return len(decode_audio(data, SAMPLE_RATE)) / SAMPLE_RATE


# --- info routes ----------------------------------------------------------------------------------


def test_health_needs_no_key(service) -> None:
    response = httpx.get(f"{service.url}/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


def test_health_engines(client: httpx.Client) -> None:
    response = client.get("/health/engines")
    assert response.status_code == 200
    engine = response.json()["TTSDeployment"]
    assert engine["status"] == "ok"
    assert engine["device"] == "cpu"
    assert engine["sample_rate"] == SAMPLE_RATE
    assert {"en", "pt"} <= set(engine["languages"])
    assert engine["default_model"] == "tiny-xtts"
    assert "tiny-xtts" in engine["loaded_models"]
    assert engine["replicas"] == {"RUNNING": 1}
    assert engine["model"]["untrained"] is True
    assert isinstance(engine["latents_computed"], int)


def test_languages(client: httpx.Client) -> None:
    response = client.get("/languages")
    assert response.status_code == 200
    body = response.json()
    assert body["default"] == "en"
    assert {"en", "pt", "es", "fr", "de", "it"} <= set(body["languages"])


def test_profiles(client: httpx.Client) -> None:
    response = client.get("/profiles")
    assert response.status_code == 200
    profiles = {p["name"]: p for p in response.json()["profiles"]}
    assert set(profiles) == {"fast", "balanced", "expressive", "ultra_quality"}
    for profile in profiles.values():
        assert profile["description"]
        assert {"temperature", "top_k", "top_p", "repetition_penalty", "speed", "do_sample"} <= set(profile["params"])
    assert profiles["balanced"]["params"]["temperature"] == 0.75
    assert profiles["expressive"]["params"]["temperature"] > profiles["ultra_quality"]["params"]["temperature"]


def test_models(client: httpx.Client) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    models = {m["id"]: m for m in response.json()["models"]}
    tiny = models["tiny-xtts"]
    assert tiny["default"] is True and tiny["loaded"] is True
    assert tiny["status"] == "ok" and tiny["kind"] == "model"
    assert [m["id"] for m in models.values() if m["default"]] == ["tiny-xtts"]


# --- synthesis ------------------------------------------------------------------------------------


def test_tts_json(client: httpx.Client) -> None:
    response = client.post("/tts", json={"text": "Hello there, world.", "seed": 11, "language": "en-US"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["x-model-used"] == "tiny-xtts"
    assert response.headers["x-seed"] == "11"
    assert response.headers["x-language"] == "en"
    assert response.headers["x-untrained-model"].startswith("true")
    seconds = float(response.headers["x-audio-seconds"])
    assert seconds > 0.5
    assert decoded_seconds(response.content) == pytest.approx(seconds, abs=0.01)


def test_tts_without_seed_reports_the_one_it_drew(client: httpx.Client) -> None:
    response = client.post("/tts", json={"text": "Hi.", "format": "pcm", "do_sample": False})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/pcm"
    assert int(response.headers["x-seed"]) >= 0
    # Raw 16-bit mono samples: the length matches the reported duration.
    assert len(response.content) / 2 / SAMPLE_RATE == pytest.approx(
        float(response.headers["x-audio-seconds"]), abs=1e-3
    )


def test_tts_multipart_with_reference(client: httpx.Client, reference_wav: bytes) -> None:
    response = client.post(
        "/tts",
        data={"text": "Cloned voice test.", "seed": "4", "quality_profile": "fast"},
        files={"reference": ("reference.wav", reference_wav, "audio/wav")},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-model-used"] == "tiny-xtts"
    assert response.headers["x-seed"] == "4"
    assert "x-untrained-model" in response.headers
    assert decoded_seconds(response.content) == pytest.approx(float(response.headers["x-audio-seconds"]), abs=0.01)


def test_tts_stream_sends_audio_while_generating(client: httpx.Client) -> None:
    arrivals: list[tuple[float, int]] = []
    body = b""
    with client.stream("POST", "/tts/stream", json={"text": "Streaming works chunk by chunk.", "seed": 2}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["x-seed"] == "2"
        assert "content-length" not in response.headers
        for chunk in response.iter_bytes():
            arrivals.append((time.monotonic(), len(chunk)))
            body += chunk
    assert len(arrivals) >= 2, "audio should arrive in several chunks"
    assert arrivals[0][0] < arrivals[-1][0]
    assert body[:4] == b"RIFF"
    assert decoded_seconds(body) > 0.5


def test_openai_speech_raw_http(client: httpx.Client) -> None:
    response = client.post(
        "/v1/audio/speech",
        json={
            "model": "tts-1",
            "voice": "alloy",
            "input": "Hello from the compatible route.",
            "response_format": "wav",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["x-model-used"] == "tiny-xtts"
    assert "x-instructions-ignored" not in response.headers
    assert decoded_seconds(response.content) > 0.5


# --- determinism ----------------------------------------------------------------------------------

DETERMINISM_REQUESTS = [
    ("/tts", {"text": "The first request.", "seed": 101, "format": "wav"}),
    (
        "/tts",
        {"text": "A second, different one.", "seed": 202, "voice": "Ana Florence", "temperature": 0.9, "format": "pcm"},
    ),
    (
        "/v1/audio/speech",
        {"model": "tts-1", "voice": "nova", "input": "And the third.", "seed": 303, "response_format": "pcm"},
    ),
]


def test_same_request_gives_same_audio_alone_or_concurrently(service, client: httpx.Client) -> None:
    assert len(DETERMINISM_REQUESTS) <= TTS_MAX_ONGOING + TTS_MAX_QUEUED
    alone = []
    for path, body in DETERMINISM_REQUESTS:
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        alone.append(response.content)
    assert len(set(alone)) == len(alone), "different requests must give different audio"

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=service.url, headers=service.headers, timeout=TIMEOUT) as http:
            return await asyncio.gather(*(http.post(path, json=body) for path, body in DETERMINISM_REQUESTS))

    concurrent = asyncio.run(together())
    assert [r.status_code for r in concurrent] == [200] * len(DETERMINISM_REQUESTS)
    for index, response in enumerate(concurrent):
        assert response.content == alone[index], f"request {index} changed when run concurrently"


# --- backpressure ---------------------------------------------------------------------------------


def test_overload_answers_503_with_retry_after_and_recovers(service, client: httpx.Client) -> None:
    count = 12

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(
            base_url=service.url, headers=service.headers, timeout=TIMEOUT, limits=limits
        ) as http:
            requests = [
                http.post("/tts", json={"text": f"Burst {i}.", "seed": i, "format": "pcm"}) for i in range(count)
            ]
            return await asyncio.wait_for(asyncio.gather(*requests), timeout=300)

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    rejected = [r for r in responses if r.status_code == 503]
    served = [r for r in responses if r.status_code == 200]
    assert rejected, f"{count} requests against {TTS_MAX_ONGOING} running + {TTS_MAX_QUEUED} queued: some must be shed"
    assert len(served) >= TTS_MAX_ONGOING
    for response in rejected:
        assert_error(response, 503, "overloaded", "capacity")
        assert int(response.headers["retry-after"]) >= 1
    assert all(len(r.content) > SAMPLE_RATE for r in served)
    # Afterwards the service answers normally again (the TTS handle's queue has drained).
    assert client.get("/health/engines").status_code == 200
    assert client.get("/languages").status_code == 200


# --- API keys -------------------------------------------------------------------------------------

PROTECTED = [
    ("POST", "/tts", {"text": "hi"}),
    ("POST", "/tts/stream", {"text": "hi"}),
    ("GET", "/voices", None),
    ("POST", "/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "hi"}),
    ("GET", "/models", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "Basic dGVzdC1rZXktMTIzOg==", "Bearer"])
def test_protected_routes_need_a_valid_key(
    service, method: str, path: str, body: dict | None, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = httpx.request(method, f"{service.url}{path}", json=body, headers=headers, timeout=30)
    assert_error(response, 401, "unauthorized", "API key", "Bearer")
    assert response.headers["www-authenticate"] == "Bearer"


def test_only_liveness_is_public(service) -> None:
    assert httpx.get(f"{service.url}/health", timeout=30).status_code == 200
    # /health/engines shows process ids, model paths and the last error: it needs the key.
    assert httpx.get(f"{service.url}/health/engines", timeout=30).status_code == 401
    assert httpx.get(f"{service.url}/health/engines", headers=service.headers, timeout=30).status_code == 200


# --- metrics --------------------------------------------------------------------------------------


def exported(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of metric ``name`` (Ray may prefix ``ray_``) whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^(?:ray_)?{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{key}="{value}"' in match.group(1) for key, value in labels.items()):
            total += float(match.group(2))
    return total


def test_request_metrics_reach_prometheus(ray_session: int, client: httpx.Client) -> None:
    assert client.get("/profiles").status_code == 200
    assert client.get("/no-such-route").status_code == 404
    deadline = time.monotonic() + 45
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{ray_session}/metrics", timeout=10).text
        except httpx.HTTPError:
            text = ""
        if (
            exported(text, "avs_requests_total", route="/profiles", status="200") >= 1
            and exported(text, "avs_requests_total", route="unmatched", status="404") >= 1
            and exported(text, "avs_errors_total", type="not_found") >= 1
            and exported(text, "avs_request_latency_seconds_count", route="/profiles") >= 1
        ):
            return
        time.sleep(2)
    avs = [line for line in text.splitlines() if "avs_" in line and not line.startswith("#")]
    pytest.fail(f"avs metrics not exported within 45 s; avs samples: {avs[:20]}")
