"""The OpenAI Python SDK against ``/v1/audio/speech``: every response format, streaming, SSE, extensions."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from voice_core.decode import decode_audio

pytestmark = pytest.mark.slow

SAMPLE_RATE = 24000
TEXT = "Hello from the OpenAI client."
# Seeded, so each format carries the same speech: the tiny model's unseeded answers are sometimes under
# half a second long (a stop token drawn early).
SEED = 7
SPEECH = {"model": "tts-1", "voice": "alloy", "input": TEXT, "extra_body": {"seed": SEED}}
LOSSY_PADDING_S = {"mp3": 0.11, "aac": 0.11}
CODECS = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "pcm_s16le", "pcm": "pcm_s16le"}


@pytest.fixture(scope="module")
def client(service):
    import openai

    with openai.OpenAI(base_url=f"{service.url}/v1", api_key=service.api_key, max_retries=0, timeout=120) as sdk:
        yield sdk


def probe(data: bytes, path: Path, fmt: str) -> dict:
    """The first stream ffprobe finds in ``data`` (raw pcm is described to it as s16le, 24 kHz, mono)."""
    path.write_bytes(data)
    raw = ["-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1"] if fmt == "pcm" else []
    result = subprocess.run(
        ["ffprobe", "-v", "error", *raw, "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    streams = json.loads(result.stdout)["streams"]
    assert len(streams) == 1, streams
    return streams[0]


@pytest.fixture(scope="module")
def pcm_seconds(client) -> float:
    """Length of the seeded test speech as raw pcm: the length every encoded format must decode to."""
    data = client.audio.speech.create(**SPEECH, response_format="pcm").content
    return len(data) / 2 / SAMPLE_RATE


@pytest.mark.parametrize("fmt", list(CODECS))
def test_every_response_format(client, pcm_seconds: float, fmt: str, tmp_path: Path) -> None:
    response = client.audio.speech.create(**SPEECH, response_format=fmt)
    data = response.content
    assert len(data) > 1000
    stream = probe(data, tmp_path / f"speech.{fmt}", fmt)
    assert stream["codec_type"] == "audio"
    assert stream["codec_name"] == CODECS[fmt]
    assert stream["channels"] == 1
    # Opus always decodes at 48 kHz; the other formats keep the model's 24 kHz.
    assert int(stream["sample_rate"]) == (48000 if fmt == "opus" else SAMPLE_RATE)
    assert response.response.headers["x-seed"] == str(SEED)
    seconds = len(data) / 2 / SAMPLE_RATE if fmt == "pcm" else len(decode_audio(data, SAMPLE_RATE)) / SAMPLE_RATE
    # The seed fixes the audio, so every container holds the same speech. Only lossy codecs' padding may
    # add to it: a streamed mp3 keeps the encoder's ~50 ms delay plus part of a 1152-sample frame, aac its
    # 1024-sample priming plus part of a frame. Opus, flac and wav give back exactly the samples sent.
    assert pcm_seconds > 0.5
    assert 0 <= seconds - pcm_seconds <= LOSSY_PADDING_S.get(fmt, 0.0)


def test_streaming_response(client) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="nova", input=TEXT, response_format="wav", extra_body={"seed": 9}
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["x-seed"] == "9"
        chunks = list(response.iter_bytes())
    assert len(chunks) >= 1
    data = b"".join(chunks)
    assert data[:4] == b"RIFF"
    assert len(decode_audio(data, SAMPLE_RATE)) / SAMPLE_RATE > 0.5


def test_voice_object_form_and_extension_fields(client) -> None:
    response = client.audio.speech.with_raw_response.create(
        model="tts-1",
        voice={"id": "Ana Florence"},
        input="Olá, tudo bem?",
        response_format="pcm",
        extra_body={"seed": 5, "language": "pt-BR"},
    )
    assert response.http_response.status_code == 200
    assert response.headers["x-seed"] == "5"
    assert response.headers["x-language"] == "pt"
    assert response.headers["x-model-used"] == "tiny-xtts"
    assert "x-instructions-ignored" not in response.headers
    assert len(response.content) > SAMPLE_RATE


def test_instructions_are_accepted_and_flagged_as_ignored(client) -> None:
    response = client.audio.speech.with_raw_response.create(
        model="gpt-4o-mini-tts",
        voice="coral",
        input=TEXT,
        response_format="pcm",
        instructions="Speak cheerfully.",
        extra_body={"seed": SEED},
    )
    assert response.headers["x-instructions-ignored"] == "true"
    assert len(response.content) > SAMPLE_RATE


def test_sse_stream(client) -> None:
    events = []
    with client.audio.speech.with_streaming_response.create(
        **SPEECH, response_format="wav", stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line:
                assert line.startswith("data: "), line
                events.append(json.loads(line.removeprefix("data: ")))
    types = [event["type"] for event in events]
    assert len(types) >= 2
    assert set(types[:-1]) == {"speech.audio.delta"}
    assert types[-1] == "speech.audio.done"
    usage = events[-1]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    audio = b"".join(base64.b64decode(event["audio"]) for event in events[:-1])
    assert audio[:4] == b"RIFF"
    assert len(decode_audio(audio, SAMPLE_RATE)) / SAMPLE_RATE > 0.5


def test_sdk_raises_on_api_errors(client) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, speed=5.0)
    assert "speed" in info.value.response.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="no-such-model", voice="alloy", input=TEXT)
