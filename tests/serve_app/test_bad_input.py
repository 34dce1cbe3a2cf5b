"""Bad requests get 4xx JSON errors naming the problem, and leave the service and its data intact."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

from tests.conftest import espeak

pytestmark = pytest.mark.slow

SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Hello."}


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("bad-input") / "reference.wav"
    return espeak(path, "A perfectly good reference recording, for contrast.").read_bytes()


@pytest.fixture(scope="module")
def stored_voice(client: httpx.Client, reference: bytes) -> str:
    """A voice created before any bad request; the last test checks it survived them all."""
    response = client.post("/voices", data={"name": "Survivor"}, files={"files": ("ref.wav", reference, "audio/wav")})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def short_wav(seconds: float) -> bytes:
    from voice_core.encode import encode_audio

    t = np.arange(int(22050 * seconds)) / 22050
    return encode_audio((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 22050, "wav")


def assert_error(response: httpx.Response, status: int, *words: str, error_type: str | None = None) -> None:
    """The project's error shape, the status, and a message that names ``words``."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "request_id"}
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["type"]
    if error_type:
        assert error["type"] == error_type
    for word in words:
        assert word in error["message"], error["message"]


def test_voice_exists_before_the_bad_requests(stored_voice: str) -> None:
    assert stored_voice.startswith("voice-")


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/tts", {"text": ""}, ["'text'", "at least 1 character"]),
        ("/tts", {"text": "   \n "}, ["'text'", "blank"]),
        ("/tts", {"text": "a" * 4097}, ["'text'", "4096"]),
        ("/v1/audio/speech", {**SPEECH, "input": ""}, ["'input'", "at least 1 character"]),
        ("/v1/audio/speech", {**SPEECH, "input": " \t "}, ["'input'", "blank"]),
        ("/v1/audio/speech", {**SPEECH, "input": "a" * 4097}, ["'input'", "4096"]),
        ("/v1/audio/speech", {**SPEECH, "response_format": "ogg"}, ["'response_format'", "'mp3'"]),
        ("/tts", {"text": "Hi.", "format": "midi"}, ["'format'", "'wav'"]),
        ("/v1/audio/speech", {**SPEECH, "speed": 0.1}, ["'speed'", "0.25"]),
        ("/v1/audio/speech", {**SPEECH, "speed": 5}, ["'speed'", "4"]),
        ("/tts", {"text": "Hi.", "speed": 0.1}, ["'speed'", "0.25"]),
        ("/tts", {"text": "Hi.", "temperature": 5e-324}, ["'temperature'", "0.01"]),
        ("/tts", {"text": "Hi.", "speed": 5}, ["'speed'", "4"]),
        ("/v1/audio/speech", {**SPEECH, "voice": {"name": "alloy"}}, ["'voice"]),
        ("/v1/audio/speech", {**SPEECH, "colour": "blue"}, ["'colour'", "Extra inputs"]),
        ("/tts", {"text": "Hi.", "colour": "blue"}, ["'colour'", "Extra inputs"]),
        ("/tts", {"text": "Hi.", "quality_profile": "turbo"}, ["'quality_profile'", "ultra_quality"]),
        ("/tts", {"text": "Hi.", "seed": -1}, ["'seed'"]),
        ("/v1/audio/speech", {"voice": "alloy"}, ["'input'", "required"]),
    ],
)
def test_invalid_fields_are_named(client: httpx.Client, path: str, body: dict, words: list[str]) -> None:
    assert_error(client.post(path, json=body), 400, *words, error_type="invalid_request_error")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tts", {"text": "Hi.", "language": "xx"}),
        ("/v1/audio/speech", {**SPEECH, "language": "xx"}),
    ],
)
def test_unknown_language(client: httpx.Client, path: str, body: dict) -> None:
    assert_error(client.post(path, json=body), 400, "'xx'", "not supported", "en", "pt")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tts", {"text": "Hi.", "voice": "Nobody Known"}),
        ("/v1/audio/speech", {**SPEECH, "voice": "nobody-known"}),
        ("/tts", {"text": "Hi.", "voice": "../voices/x"}),
        ("/v1/audio/speech", {**SPEECH, "voice": {"id": "../../etc/passwd"}}),
    ],
)
def test_unknown_or_path_like_voice(client: httpx.Client, path: str, body: dict) -> None:
    voice = body["voice"]["id"] if isinstance(body["voice"], dict) else body["voice"]
    assert_error(client.post(path, json=body), 404, "unknown voice", repr(voice), "GET /voices", error_type="not_found")


@pytest.mark.parametrize(
    ("path", "body"),
    [("/tts", {"text": "Hi.", "model": "no-such-model"}), ("/v1/audio/speech", {**SPEECH, "model": "no-such-model"})],
)
def test_unknown_model_is_404(client: httpx.Client, path: str, body: dict) -> None:
    assert_error(client.post(path, json=body), 404, "'no-such-model'", "tiny-xtts", error_type="not_found")


@pytest.mark.parametrize("model", ["../x", "..", "a/b", "/etc"])
def test_path_like_model_id(client: httpx.Client, model: str) -> None:
    assert_error(client.post("/tts", json={"text": "Hi.", "model": model}), 400, "invalid model id", repr(model))


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("voice_id", ["a..b", ".hidden"])
def test_path_like_voice_id_in_url(client: httpx.Client, method: str, voice_id: str) -> None:
    assert_error(client.request(method, f"/voices/{voice_id}"), 400, "invalid voice id", repr(voice_id))


def test_non_audio_reference(client: httpx.Client) -> None:
    files = {"reference": ("notes.wav", b"these are not audio bytes at all\n" * 200, "audio/wav")}
    response = client.post("/tts", data={"text": "Hi."}, files=files)
    assert_error(response, 400, "'notes.wav'", "not a recognised audio file", error_type="invalid_audio")
    response = client.post("/voices", data={"name": "Text"}, files={"files": ("notes.txt", b"hello " * 500)})
    assert_error(response, 400, "'notes.txt'", "not a recognised audio file", error_type="invalid_audio")


def test_oversize_upload_is_413(client: httpx.Client) -> None:
    big = io.BytesIO(b"\0" * 21_000_000)  # the default AVS_MAX_UPLOAD_BYTES is 20 MB
    response = client.post("/voices", data={"name": "Huge"}, files={"files": ("huge.wav", big, "audio/wav")})
    assert_error(response, 413, "'huge.wav'", "20000000", "AVS_MAX_UPLOAD_BYTES", error_type="payload_too_large")


def test_too_short_reference(client: httpx.Client) -> None:
    files = {"reference": ("blip.wav", short_wav(0.2), "audio/wav")}
    response = client.post("/tts", data={"text": "Hi."}, files=files)
    assert_error(response, 400, "'blip.wav'", "0.20 s", "at least 1")


def test_unknown_form_field(client: httpx.Client, reference: bytes) -> None:
    files = {"reference": ("ref.wav", reference, "audio/wav")}
    response = client.post("/tts", data={"text": "Hi.", "colour": "blue"}, files=files)
    assert_error(response, 400, "'colour'", "Extra inputs")


@pytest.mark.parametrize("path", ["/tts", "/v1/audio/speech"])
@pytest.mark.parametrize("content", [b"{bad json", b'{"text": "Hi.",}', b"[1, 2]"])
def test_malformed_json(client: httpx.Client, path: str, content: bytes) -> None:
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    assert_error(response, 400, error_type="invalid_request_error")
    message = response.json()["error"]["message"]
    assert "JSON" in message or "object" in message or "dict" in message, message


def test_unknown_path_is_404_json(client: httpx.Client) -> None:
    assert_error(client.get("/no/such/route"), 404, "/no/such/route", error_type="not_found")


@pytest.mark.parametrize(("method", "path"), [("GET", "/tts"), ("PUT", "/v1/audio/speech"), ("POST", "/health")])
def test_wrong_method_is_405_json(client: httpx.Client, method: str, path: str) -> None:
    assert_error(client.request(method, path), 405, method, path, error_type="method_not_allowed")


def test_service_and_stored_voice_survive_the_bad_requests(service, client: httpx.Client, stored_voice: str) -> None:
    assert httpx.get(f"{service.url}/health", timeout=30).json() == {"status": "ok"}
    assert stored_voice in {v["id"] for v in client.get("/voices").json()["voices"]}
    response = client.post("/tts", json={"text": "Still here.", "voice": stored_voice, "seed": 1, "format": "pcm"})
    assert response.status_code == 200, response.text
    assert len(response.content) > 24000
    assert client.delete(f"/voices/{stored_voice}").status_code == 204
