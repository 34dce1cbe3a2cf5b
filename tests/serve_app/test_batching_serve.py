"""Request batching in the TTS deployment on the session's Ray: concurrent requests share a batch and
each gets its own audio, a cancelled stream leaves the others alone, and the batch size changes on the
running replica through the deployment's user_config.

A second, private TTS application (handle calls only) is deployed next to the session's service, with
a long batch wait so that requests sent together surely meet in one batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serve_app.speech.engine import EngineRequest, XttsEngine
from serve_app.speech.profiles import resolve_params
from serve_app.speech.protocol import SynthesisRequest, SynthesisResult
from tests.serve_app.coqui_reference import coqui_synthesize
from voice_core.settings import Settings

pytestmark = pytest.mark.slow

APP = "batching-test"
GREEDY = {"do_sample": False}
# The replica and this process run different OpenMP teams: float rounding differs (~1e-7), tokens do not.
ROUNDING = 1e-5
INT16_LSB = 2


@pytest.fixture(scope="module")
def settings(service) -> Settings:
    return Settings.load(storage_root=service.storage, demo_tiny_model=True, batch_max_size=4, batch_wait_s=1.0)


def deploy(settings: Settings, user_config: dict) -> object:
    from ray import serve

    from serve_app.speech.service import TTSDeployment

    app = TTSDeployment.options(
        ray_actor_options={"num_cpus": 0.25},
        max_ongoing_requests=8,
        user_config=user_config,
    ).bind(settings)
    return serve.run(app, name=APP, route_prefix=None)


@pytest.fixture(scope="module")
def handle(settings: Settings):
    from ray import serve

    yield deploy(settings, {})
    serve.delete(APP)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> XttsEngine:
    from voice_core.xtts_model import load_xtts

    model, report = load_xtts(tiny_model_dir, device="cpu")
    return XttsEngine(model, report)


def expected(engine: XttsEngine, request: SynthesisRequest, *, stream: bool = False) -> np.ndarray:
    """The request's audio from coqui's unbatched inference in this process (joined chunks for a stream)."""
    voice = engine.builtin_voice(request.voice or "")
    assert voice is not None
    params = resolve_params(request.profile, request.overrides)
    unit = request.stream_unit if stream else None
    return coqui_synthesize(
        engine, EngineRequest(request.text, request.language or "en", voice, params, request.seed or 0, unit)
    )


def batch_sizes(handle) -> dict[str, int]:
    return handle.info.remote().result()["batching"]["batch_sizes"]


def test_concurrent_requests_share_a_batch_and_get_their_own_audio(handle, engine: XttsEngine) -> None:
    requests = [
        SynthesisRequest("Hello there, world.", "en", "Claribel Dervla", overrides=GREEDY, seed=1, raw=True),
        SynthesisRequest("Olá, tudo bem com você?", "pt", "Ana Florence", overrides=GREEDY, seed=2, raw=True),
        SynthesisRequest("Uno dos.", "es", "Viktor Eka", seed=3, raw=True),
    ]
    before = batch_sizes(handle)
    responses = [handle.synthesize.remote(r) for r in requests]
    results: list[SynthesisResult] = [r.result(timeout_s=300) for r in responses]
    after = batch_sizes(handle)
    assert after.get("3", 0) == before.get("3", 0) + 1, after
    for request, result in zip(requests, results, strict=True):
        assert result.samples is not None and result.language == request.language
        np.testing.assert_allclose(result.samples, expected(engine, request), rtol=0, atol=ROUNDING)


def test_a_cancelled_stream_does_not_disturb_the_others(handle, engine: XttsEngine) -> None:
    requests = [
        SynthesisRequest("Hello there, world.", "en", "Claribel Dervla", seed=s, response_format="pcm")
        for s in (11, 12, 13)
    ]
    streams = [handle.options(stream=True).stream.remote(r) for r in requests]
    for stream in streams:
        assert isinstance(next(stream), SynthesisResult)
    next(streams[1])  # its first audio chunk: the batch is decoding
    streams[1].cancel()
    for index in (0, 2):
        pcm = b"".join(streams[index])
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
        reference = np.clip(np.round(expected(engine, requests[index], stream=True) * 32767), -32768, 32767)
        assert len(audio) == len(reference)
        assert np.abs(audio - reference).max() <= INT16_LSB
    # The replica is free again: a new request is answered.
    again = handle.synthesize.remote(SynthesisRequest("Hi.", "en", "Claribel Dervla", seed=1, raw=True))
    assert again.result(timeout_s=300).samples is not None


def test_user_config_sets_the_batch_size(handle, settings: Settings) -> None:
    info = handle.info.remote().result()
    assert info["batching"]["max_size"] == 4
    # What Serve calls on a running replica when only its user_config changes: no restart.
    handle.reconfigure.remote({"batch_max_size": 2, "batch_wait_s": 0.5}).result()
    live = handle.info.remote().result()
    assert live["pid"] == info["pid"] and live["batching"]["max_size"] == 2 and live["batching"]["wait_s"] == 0.5
    requests = [SynthesisRequest("Hi.", "en", "Claribel Dervla", seed=s, raw=True) for s in (1, 2, 3)]
    for response in [handle.synthesize.remote(r) for r in requests]:
        assert response.result(timeout_s=300).samples is not None
    grown = batch_sizes(handle)
    assert max(int(size) for size in grown) <= 4 and grown.get("2", 0) >= 1, grown
    try:
        # A deployment given user_config {"batch_max_size": 1} decodes each request alone.
        unbatched = deploy(settings, {"batch_max_size": 1})
        changed = unbatched.info.remote().result()
        assert changed["batching"]["max_size"] == 1
        assert changed["batching"]["wait_s"] == settings.batch_wait_s  # left out: the settings value
        for response in [unbatched.synthesize.remote(r) for r in requests[:2]]:
            assert response.result(timeout_s=300).samples is not None
        assert batch_sizes(unbatched) == {"1": 2}, "batch size 1: each request a batch of one"
    finally:
        deploy(settings, {})
