"""Hostile input over real HTTP against the real Serve deployment: nothing crashes, stalls or leaks.

Each case is a request a hostile stranger could send (malformed bodies, odd audio, odd subtitles, odd
headers, traversal, floods). For every one of them:

- the answer is a 4xx JSON error in the project's shape whose message names the problem;
- ``GET /health`` answers within 1 s afterwards;
- the stored voices and jobs are unchanged;
- the ingress replica is the same process (its pid, from Ray's state API, did not change).

Raw requests go through ``http.client`` so that chunked bodies and exact headers are what the test says.
"""

from __future__ import annotations

import http.client
import io
import json
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from tests.conftest import espeak

pytestmark = pytest.mark.slow

SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Hello."}
JSON = "application/json"


def wav(channels: int, seconds: float, rate: int = 16000) -> bytes:
    """A PCM16 WAV of a quiet tone on every channel."""
    frames = int(rate * seconds)
    tone = (3000 * np.sin(2 * np.pi * 220 * np.arange(frames) / rate)).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(np.repeat(tone[:, None], channels, axis=1).tobytes())
    return buffer.getvalue()


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = "hostileboundary7"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data in files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        parts.append(head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def srt(*blocks: str) -> str:
    return "\n\n".join(blocks) + "\n"


@dataclass
class Case:
    """One hostile request and what its answer must say."""

    id: str
    method: str
    path: str
    status: int
    words: tuple[str, ...]
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    auth: bool = True


def json_case(id: str, path: str, body: Any, status: int, *words: str, **extra: Any) -> Case:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Case(id, "POST", path, status, words, data, {"Content-Type": JSON, **extra.pop("headers", {})}, **extra)


def form_case(id: str, path: str, fields: dict, files: list, status: int, *words: str) -> Case:
    body, content_type = multipart(fields, files)
    return Case(id, "POST", path, status, words, body, {"Content-Type": content_type})


DEEP = b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}"
BIG_JSON = json.dumps({**SPEECH, "input": "a" * 400_000}).encode()
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


def cases() -> list[Case]:
    eight_short = wav(8, 0.01, 8000)  # the 844-byte file that crashed PyAV
    many_channels = wav(12, 1.5)
    good = {"text": "Hi."}
    return [
        # audio uploads
        form_case("8ch-wav-voice", "/voices", {"name": "x"}, [("files", "a.wav", eight_short)], 400, "0.01 s"),
        form_case("8ch-wav-tts", "/tts", good, [("reference", "a.wav", eight_short)], 400, "'a.wav'"),
        form_case("12ch-wav-voice", "/voices", {"name": "x"}, [("files", "m.wav", many_channels)], 400, "12"),
        form_case("12ch-wav-tts", "/tts", good, [("reference", "m.wav", many_channels)], 400, "channels"),
        form_case("png-reference", "/tts", good, [("reference", "p.wav", PNG)], 400, "not a recognised audio"),
        form_case("empty-reference", "/voices", {"name": "x"}, [("files", "e.wav", b"")], 400, "empty"),
        form_case("truncated-wav", "/voices", {"name": "x"}, [("files", "t.wav", wav(1, 2.0)[:60])], 400, "t.wav"),
        form_case("wrong-file-field", "/voices", {"name": "x"}, [("other", "a.wav", wav(1, 2))], 400, "'other'"),
        form_case(
            "too-many-references",
            "/tts",
            good,
            [("reference", f"r{i}.wav", wav(1, 1.5)) for i in range(6)],
            400,
            "reference",
        ),
        form_case("voice-name-control", "/voices", {"name": "a\x07b"}, [("files", "a.wav", wav(1, 2))], 400, "'name'"),
        # subtitles
        json_case(
            "srt-markup-flood",
            "/jobs",
            {"srt": srt("1\n00:00:01,000 --> 00:00:02,000\n" + "<" * 400_000)},
            413,
            "AVS_MAX",
        ),
        json_case(
            "srt-400-digit-hours",
            "/jobs",
            {"srt": srt("1\n" + "9" * 400 + ":00:01,000 --> 00:00:02,000\nHi")},
            400,
            "SRT line 2",
        ),
        json_case(
            "srt-superscript-number",
            "/jobs",
            {"srt": srt("\u00b2\n00:00:01,000 --> 00:00:02,000\nHi")},
            400,
            "SRT line 1",
        ),
        json_case(
            "srt-arabic-digits",
            "/jobs",
            {"srt": srt("1\n\u0660\u0660:00:01,000 --> 00:00:02,000\nHi")},
            400,
            "SRT line 2",
        ),
        json_case(
            "srt-99999-hours",
            "/jobs",
            {"srt": srt("1\n99999:00:01,000 --> 99999:00:02,000\nHi")},
            400,
            "AVS_MAX_JOB_AUDIO_SECONDS",
        ),
        json_case("srt-not-utf8-json", "/jobs", b'{"srt": "\xff\xfe"}', 400, "JSON"),
        form_case("srt-file-not-utf8", "/jobs", {}, [("srt", "s.srt", b"\xff\xfe\x00bad")], 400, "UTF-8"),
        # deep and malformed JSON
        json_case("deep-json-tts", "/tts", DEEP, 400, "deeper"),
        json_case("deep-json-jobs", "/jobs", DEEP, 400, "deeper"),
        json_case("deep-json-speech", "/v1/audio/speech", DEEP, 400, "deeper"),
        json_case("deep-json-datasets", "/datasets", DEEP, 400, "deeper"),
        json_case("deep-json-training", "/training/jobs", DEEP, 400, "deeper"),
        json_case("json-array", "/tts", [1, 2], 400, "JSON object"),
        json_case("broken-json", "/tts", b'{"text": "Hi', 400, "not valid JSON"),
        json_case(
            "nan-speed",
            "/v1/audio/speech",
            b'{"model":"tts-1","voice":"alloy","input":"x","speed":NaN}',
            400,
            "'speed'",
        ),
        json_case("huge-seed", "/tts", {"text": "Hi.", "seed": 10**400}, 400, "'seed'"),
        # ids that reach headers, logs and paths
        json_case(
            "model-crlf",
            "/v1/audio/speech",
            {**SPEECH, "model": "a\r\nx-evil: 1", "allow_fallback": True},
            400,
            "'model'",
        ),
        json_case(
            "model-latin1",
            "/v1/audio/speech",
            {**SPEECH, "model": "mod\u00e9le", "allow_fallback": True},
            400,
            "'model'",
        ),
        json_case(
            "model-emoji", "/tts", {"text": "Hi.", "model": "\U0001f600", "allow_fallback": True}, 400, "'model'"
        ),
        json_case("model-traversal", "/tts", {"text": "Hi.", "model": "../../etc"}, 400, "'model'"),
        json_case("voice-control", "/tts", {"text": "Hi.", "voice": "a\nb"}, 400, "'voice'"),
        json_case("language-traversal", "/tts", {"text": "Hi.", "language": "../x"}, 400, "'language'"),
        json_case(
            "dataset-cwd-name",
            "/training/jobs",
            {"dataset": "tests", "base_model": "tiny-xtts", "run_name": "r1"},
            404,
            "tests",
        ),
        json_case(
            "dataset-path",
            "/training/jobs",
            {"dataset": "/etc", "base_model": "tiny-xtts", "run_name": "r1"},
            400,
            "'dataset'",
        ),
        # sizes and media types
        json_case("speech-too-big", "/v1/audio/speech", BIG_JSON, 413, "bytes"),
        json_case("speech-too-big-chunked", "/v1/audio/speech", BIG_JSON, 413, "bytes", chunked=True),
        json_case(
            "training-too-big-chunked",
            "/training/jobs",
            b'{"x": "' + b"a" * 400_000 + b'"}',
            413,
            "bytes",
            chunked=True,
        ),
        json_case("declared-huge", "/training/jobs", b"{}", 413, "bytes", headers={"Content-Length": "99999999999"}),
        Case(
            "text-plain-json",
            "POST",
            "/v1/audio/speech",
            415,
            ("application/json",),
            json.dumps(SPEECH).encode(),
            {"Content-Type": "text/plain"},
        ),
        Case(
            "form-to-speech",
            "POST",
            "/v1/audio/speech",
            415,
            ("application/json",),
            b"input=hi&voice=alloy",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        Case("no-content-type", "POST", "/training/jobs", 415, ("application/json",), b"{}", {}),
        Case("json-to-voices", "POST", "/voices", 415, ("multipart",), b'{"name": "x"}', {"Content-Type": JSON}),
        # headers
        json_case(
            "cross-origin-post",
            "/tts",
            {"text": "Hi."},
            403,
            "AVS_CORS_ORIGINS",
            headers={"Origin": "http://evil.example"},
        ),
        Case("foreign-host", "GET", "/voices", 400, ("AVS_ALLOWED_HOSTS",), headers={"Host": "evil.example"}),
        Case(
            "rebinding-host-post",
            "POST",
            "/tts",
            400,
            ("not served here",),
            b'{"text":"Hi."}',
            {"Host": "attacker.example:8000", "Content-Type": JSON},
        ),
        Case("engines-without-key", "GET", "/health/engines", 401, ("API key",), auth=False),
        Case("health-prefix-without-key", "GET", "/healthz", 401, ("API key",), auth=False),
        Case("wrong-key", "GET", "/voices", 401, ("API key",), headers={"Authorization": "Bearer nope"}, auth=False),
        # paths and methods
        Case("voice-traversal", "GET", "/voices/..%2F..%2Fetc%2Fpasswd", 404, ("Not Found",)),
        Case("voice-dotdot", "DELETE", "/voices/..", 400, ("invalid voice id",)),
        Case("job-dotdot", "GET", "/jobs/..", 400, ("invalid job id",)),
        Case("job-hidden", "GET", "/jobs/.owner", 400, ("invalid job id",)),
        Case("clip-dotdot", "GET", "/datasets/x/clips/.../audio", 400, ("clip id",)),
        Case("sample-traversal", "GET", "/training/runs/r/samples/..%2Frun.json", 404, ("r",)),
        Case("ui-traversal", "GET", "/ui/..%2F..%2Fpyproject.toml", 404, ("Not Found",), auth=False),
        Case("ui-dotdot", "GET", "/ui/..", 400, ("asset",), auth=False),
        Case("put-voices", "PUT", "/voices", 405, ("GET", "POST")),
        Case("options-tts", "OPTIONS", "/tts", 405, ("POST",)),
        Case("bad-limit", "GET", "/jobs?limit=-1", 400, ("'limit'",)),
        Case("text-limit", "GET", "/jobs?limit=abc", 400, ("'limit'",)),
    ]


CASES = cases()


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=120) as http:
        yield http


def ingress_pid() -> int:
    """Pid of the live ingress replica of the ``voice`` application (from the GCS actor table)."""
    from ray._private.state import actors

    alive = [
        info["Pid"]
        for info in actors().values()
        if info["ActorClassName"] == "ServeReplica:voice:Ingress" and info["State"] == "ALIVE"
    ]
    assert len(alive) == 1, alive
    return alive[0]


def stored_state(storage: Path) -> dict[str, Any]:
    """The voices (whole records) and the jobs (ids and finished outcomes) in storage."""
    voices = {p.parent.name: p.read_text() for p in (storage / "voices").glob("*/voice.json")}
    jobs = {}
    for path in (storage / "jobs").glob("*/job.json"):
        record = json.loads(path.read_text())
        jobs[record["id"]] = record["status"] if record["status"] in ("succeeded", "failed", "cancelled") else "active"
    return {"voices": voices, "jobs": jobs}


@pytest.fixture(scope="module")
def baseline(client: httpx.Client, service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A stored voice made before any hostile request, the storage state and the ingress pid."""
    reference = espeak(tmp_path_factory.mktemp("hostile") / "ref.wav", "A good reference recording for contrast.")
    made = client.post("/voices", data={"name": "Keeper"}, files={"files": ("ref.wav", reference.read_bytes())})
    assert made.status_code == 201, made.text
    return {"pid": ingress_pid(), "voice": made.json()["id"]}


def send(url: str, case: Case, api_key: str) -> tuple[int, dict[str, str], bytes]:
    """Send ``case`` byte for byte (chunked when asked) and return status, headers and body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    headers = dict(case.headers)
    if case.auth:
        headers.setdefault("Authorization", f"Bearer {api_key}")
    try:
        connection.putrequest(case.method, case.path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if case.chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        elif case.body and "Content-Length" not in headers:
            connection.putheader("Content-Length", str(len(case.body)))
        connection.endheaders()
        if case.chunked:
            for start in range(0, len(case.body), 65536):
                piece = case.body[start : start + 65536]
                try:
                    connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    break  # the server answered (413) and closed before the rest arrived
            else:
                connection.send(b"0\r\n\r\n")
        elif case.body and headers.get("Content-Length", str(len(case.body))) == str(len(case.body)):
            connection.send(case.body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request_gets_a_clear_4xx_and_harms_nothing(
    case: Case, service, client: httpx.Client, baseline: dict[str, Any]
) -> None:
    before = stored_state(service.storage)
    status, headers, body = send(service.url, case, service.api_key)

    assert 400 <= status < 500, (status, body[:500])
    assert status == case.status, (status, body[:500])
    assert headers["content-type"].startswith("application/json"), headers
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "request_id"}
    for word in case.words:
        assert word in error["message"], error["message"]
    assert str(service.storage) not in error["message"]
    if status == 405:
        allowed = {method.strip() for method in headers["allow"].split(",")}
        assert set(case.words) <= allowed, headers["allow"]

    health = httpx.get(f"{service.url}/health", timeout=1.0)
    assert health.status_code == 200
    assert stored_state(service.storage) == before
    assert ingress_pid() == baseline["pid"]


def test_the_voice_made_before_survives_every_case(client: httpx.Client, baseline: dict[str, Any]) -> None:
    assert len(CASES) >= 40
    answer = client.get(f"/voices/{baseline['voice']}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "Keeper"


def test_a_7_1_recording_is_a_usable_reference(client: httpx.Client) -> None:
    seven_one = wav(8, 2.0)
    answer = client.post("/tts", data={"text": "Hi.", "seed": "3"}, files={"reference": ("71.wav", seven_one)})
    assert answer.status_code == 200, answer.text
    with wave.open(io.BytesIO(answer.content)) as audio:
        assert audio.getnchannels() == 1
        assert audio.getnframes() > 0.1 * audio.getframerate()
