"""The TTS replica's class in this process (no Ray): where the synthesis metrics are recorded.

Every synthesis, whole (``/tts``, jobs) or streamed (``/tts/stream``, ``/v1/audio/speech``), records its
metrics once, in the replica, where its audio and timings are known; the routes record none.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import serve_app.speech.service as service
from serve_app.speech.protocol import SynthesisRequest
from voice_core.settings import Settings

VOICE = "Claribel Dervla"


@pytest.fixture(scope="module")
def loop() -> Any:
    """One event loop for the module: Serve's batch queue stays on the loop that first used it."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from ray.serve.batching import _BatchQueue

    # Serve's batch queue asks the replica context for max_ongoing_requests, only to warn.
    patch = pytest.MonkeyPatch()
    patch.setattr(_BatchQueue, "_warn_if_max_batch_size_exceeds_max_ongoing_requests", lambda self: None)
    settings = Settings.load(storage_root=tmp_path_factory.mktemp("replica") / "storage", demo_tiny_model=True)
    yield service.TTSDeployment.func_or_class(settings)
    patch.undo()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    calls: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(service, "record_synthesis", lambda *args: calls.append(("synthesis", args)))
    monkeypatch.setattr(service, "record_first_audio", lambda *args: calls.append(("first_audio", args)))
    return calls


def test_a_whole_synthesis_records_its_metrics_in_the_replica(replica: Any, loop: Any, recorded: list) -> None:
    result = loop.run_until_complete(replica.synthesize(SynthesisRequest("Hi.", "en", VOICE, seed=1, raw=True)))
    assert result.samples is not None and result.audio_seconds > 0
    assert recorded == [
        ("synthesis", ("tiny-xtts", result.audio_seconds, result.synth_seconds, result.first_chunk_s, False))
    ]
    assert result.first_chunk_s is not None and 0 < result.first_chunk_s <= result.synth_seconds


def test_a_stream_records_its_first_audio_and_its_metrics_in_the_replica(
    replica: Any, loop: Any, recorded: list
) -> None:
    async def stream() -> list[Any]:
        request = SynthesisRequest("Hi.", "en", VOICE, seed=1, response_format="pcm")
        return [part async for part in replica.stream(request)]

    meta, *chunks = loop.run_until_complete(stream())
    audio_seconds = sum(len(chunk) for chunk in chunks) / 2 / meta.sample_rate
    [(first, (waited,)), (synthesis, (model, seconds, synth_seconds, first_audio, fallback))] = recorded
    assert (first, synthesis, model, first_audio, fallback) == ("first_audio", "synthesis", "tiny-xtts", None, False)
    assert seconds == pytest.approx(audio_seconds, abs=1e-3)
    assert 0 < waited and 0 < synth_seconds


def test_the_speech_routes_record_no_synthesis_metrics() -> None:
    source = (Path(service.__file__).parent / "routes.py").read_text()
    assert "record_synthesis" not in source and "record_first_audio" not in source
