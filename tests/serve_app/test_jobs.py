"""Synthesis jobs over HTTP: text and SRT round trips, cancel, bad input, and durability.

The durability tests kill the TTS replica mid-job and restart the whole of Serve mid-job; the
restart test restores the application exactly as the session fixture deployed it.
"""

from __future__ import annotations

import re
import shutil
import time
from urllib.parse import urlparse

import httpx
import pytest

from tests.helpers import wait_for_http
from voice_core.decode import decode_audio

pytestmark = pytest.mark.slow

RATE = 24000
FINAL = ("succeeded", "failed", "cancelled")
# Slots of 4-5 s: the tiny model speaks about 3.7 s per cue, so cue 2 needs a small stretch.
SRT = """1
00:00:00,500 --> 00:00:04,700
Hello there.

2
00:00:05,000 --> 00:00:08,000
<i>A second</i>
line of subtitles.

3
00:00:08,500 --> 00:00:13,000
And the last one.
"""

# Eight cues: long enough that the job cannot finish during Serve's graceful shutdown.
LONG_SRT = "\n".join(
    f"{i + 1}\n00:00:{i * 5:02d},000 --> 00:00:{i * 5 + 4:02d},500\nSentence number {i + 1}.\n" for i in range(8)
)


# The tiny model with the release's HiFiGAN width: about 1.4 s per cue on a CPU instead of 0.13 s, so
# the tests that kill or restart something mid-job, or cancel one, find a cue in flight.
SLOW_MODEL = "tiny-xtts-wide"


@pytest.fixture(scope="module")
def slow_model(service, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``SLOW_MODEL`` in the service's storage (fine-tuned models are found there by id, on demand)."""
    from voice_core.tiny import TinyModelSpec, make_tiny_model

    target = service.storage / "models" / SLOW_MODEL
    if not target.exists():
        made = make_tiny_model(tmp_path_factory.mktemp("models") / SLOW_MODEL, TinyModelSpec(decoder_width=512))
        shutil.copytree(made, target)
    return SLOW_MODEL


def _post(service, timeout: float = 60, **kwargs) -> httpx.Response:
    return httpx.post(f"{service.url}/jobs", headers=service.headers, timeout=timeout, **kwargs)


def _get(service, path: str) -> httpx.Response:
    return httpx.get(f"{service.url}{path}", headers=service.headers, timeout=30)


def _submit(service, **body) -> dict:
    response = _post(service, json=body)
    assert response.status_code == 202, response.text
    return response.json()


def _wait(service, job_id: str, until=lambda r: r["status"] in FINAL, deadline_s: float = 180) -> dict:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        response = _get(service, f"/jobs/{job_id}")
        if response.status_code == 200 and until(record := response.json()):
            return record
        time.sleep(0.25)
    raise TimeoutError(f"job {job_id} did not get there in {deadline_s}s: {_get(service, f'/jobs/{job_id}').text}")


def test_text_job_round_trip(service) -> None:
    # Two sentences over the "fast" profile's 150-character pieces: two units, joined.
    text = "Hello there, this is one sentence of a short job for the voice service, said twice. " * 2
    created = _submit(service, text=text.strip(), quality_profile="fast", seed=7)
    assert re.fullmatch(r"job-[0-9a-f]{12}", created["id"])
    assert created["status"] == "queued"
    early = _get(service, f"/jobs/{created['id']}/audio")
    if early.status_code != 200:  # it may already be done on a fast machine
        assert early.status_code == 409
        assert "poll GET /jobs/" in early.json()["error"]["message"]
    record = _wait(service, created["id"])
    assert record["status"] == "succeeded", record
    assert (record["progress"], record["done"], record["total"]) == (1.0, 2, 2)
    assert (record["model_requested"], record["model_used"], record["fallback"]) == ("tiny-xtts", "tiny-xtts", False)
    assert record["attempts"] == 1 and record["error"] is None and record["seed"] == 7
    timings = record["timings"]
    assert timings["created_at"] <= timings["started_at"] <= timings["finished_at"]
    assert timings["synth_seconds"] > 0 and timings["audio_seconds"] > 0
    audio = _get(service, record["audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert len(decode_audio(audio.content, RATE)) / RATE == pytest.approx(timings["audio_seconds"], abs=0.01)
    listed = _get(service, "/jobs").json()["data"]
    assert created["id"] in [job["id"] for job in listed]
    created_at = [job["timings"]["created_at"] for job in listed]
    assert created_at == sorted(created_at, reverse=True)
    job_dir = service.storage / "jobs" / created["id"]
    assert (job_dir / "result.wav").is_file() and not (job_dir / "parts").exists()


def test_srt_upload_job_makes_a_timed_track(service) -> None:
    response = _post(service, data={"format": "flac", "seed": "3"}, files={"srt": ("subs.srt", SRT.encode())})
    assert response.status_code == 202, response.text
    record = _wait(service, response.json()["id"])
    assert record["status"] == "succeeded", record
    assert (record["kind"], record["total"], record["media_type"]) == ("srt", 3, "audio/flac")
    audio = _get(service, record["audio_url"])
    assert audio.headers["content-type"] == "audio/flac"
    seconds = len(decode_audio(audio.content, RATE)) / RATE
    assert seconds == pytest.approx(13.0, abs=0.05)
    assert record["timings"]["audio_seconds"] == pytest.approx(13.0, abs=0.05)
    print(f"\nSRT job: {_timings(record)}, warnings: {record['warnings']}")


def test_unknown_model_fails_the_job_or_falls_back_when_allowed(service) -> None:
    failed = _wait(service, _submit(service, text="Hi.", model="no-such-model")["id"])
    assert failed["status"] == "failed" and failed["model_requested"] == "no-such-model"
    assert failed["error"]["type"] == "not_found" and "no-such-model" in failed["error"]["message"], failed
    fell_back = _wait(service, _submit(service, text="Hi.", model="no-such-model", allow_fallback=True)["id"])
    assert fell_back["status"] == "succeeded", fell_back
    assert (fell_back["model_used"], fell_back["fallback"]) == ("tiny-xtts", True)
    assert "no-such-model" in fell_back["fallback_reason"]


def test_cancel_stops_the_job(service, slow_model: str) -> None:
    created = _submit(service, srt=SRT, model=slow_model)
    cancelled = httpx.delete(f"{service.url}/jobs/{created['id']}", headers=service.headers, timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    time.sleep(3)  # a unit in flight finishes; nothing after it starts
    record = _get(service, f"/jobs/{created['id']}").json()
    assert record["status"] == "cancelled" and record["done"] < record["total"]
    assert httpx.delete(f"{service.url}/jobs/{created['id']}", headers=service.headers).status_code == 200
    audio = _get(service, f"/jobs/{created['id']}/audio")
    assert audio.status_code == 409 and "cancelled" in audio.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (
            {"srt": "1\n00:00:01,000 --> 00:00:02,000\nHi\n\n2\n00:00:03 --> 00:00:04,000\nYo\n"},
            r"SRT line 6: expected",
        ),
        ({"text": "   "}, r"text is empty"),
        ({"text": "Hi.", "srt": SRT}, r"exactly one of 'text'"),
        ({}, r"exactly one of 'text'"),
        ({"text": "Hi.", "quality_profile": "loud"}, r"quality_profile.*unknown quality profile"),
        ({"text": "Hi.", "format": "ogg"}, r"format"),
        ({"text": "Hi.", "language": "xx"}, r"language 'xx' is not supported"),
        ({"text": "Hi.", "speed": 2}, r"speed"),
    ],
)
def test_bad_job_requests_are_refused_before_anything_runs(service, body: dict, pattern: str) -> None:
    before = {path.name for path in (service.storage / "jobs").iterdir()}
    response = _post(service, json=body)
    assert response.status_code == 400, response.text
    assert re.search(pattern, response.json()["error"]["message"]), response.json()
    assert {path.name for path in (service.storage / "jobs").iterdir()} == before


def test_a_job_for_an_unknown_voice_is_a_404_and_stores_nothing(service) -> None:
    before = {path.name for path in (service.storage / "jobs").iterdir()}
    response = _post(service, json={"text": "Hi.", "voice": "nobody-like-this"})
    assert response.status_code == 404, response.text
    assert "unknown voice 'nobody-like-this'" in response.json()["error"]["message"]
    assert {path.name for path in (service.storage / "jobs").iterdir()} == before


def test_too_much_text_is_refused(service) -> None:
    response = _post(service, json={"text": "word " * 20_001})
    assert response.status_code == 413
    assert "AVS_MAX_JOB_CHARS" in response.json()["error"]["message"]


def test_job_ids_are_validated_and_unknown_ids_are_404(service) -> None:
    for path in ("/jobs/.hidden", "/jobs/job..x/audio", "/jobs/%2E%2E"):
        response = _get(service, path)
        assert response.status_code == 400, (path, response.text)
        assert "invalid job id" in response.json()["error"]["message"]
    assert _get(service, "/jobs/job-000000000000").status_code == 404
    assert _get(service, "/jobs/job-000000000000/audio").status_code == 404
    assert httpx.delete(f"{service.url}/jobs/job-000000000000", headers=service.headers).status_code == 404
    assert httpx.get(f"{service.url}/jobs").status_code == 401


def _tts_replica_actor():
    """The one TTS replica actor and its id (through GCS: the test cluster runs no dashboard/state API)."""
    import ray

    names = [
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["namespace"] == "serve" and entry["name"].startswith("SERVE_REPLICA::voice#TTSDeployment#")
    ]
    assert len(names) == 1, names
    actor = ray.get_actor(names[0], namespace="serve")
    return actor, actor._actor_id.hex()


def test_job_survives_a_killed_tts_replica(service, slow_model: str) -> None:
    import ray

    created = _submit(service, srt=SRT, seed=5, model=slow_model)
    _wait(service, created["id"], until=lambda r: r["done"] >= 1 or r["status"] in FINAL)
    actor, actor_id = _tts_replica_actor()
    ray.kill(actor, no_restart=False)
    record = _wait(service, created["id"])
    assert record["status"] == "succeeded", record
    assert record["model_used"] == slow_model
    assert record["done"] == record["total"] == 3
    assert record["retries"] >= 1, record
    assert _tts_replica_actor()[1] != actor_id  # Serve replaced the replica
    print(f"\nkilled TTS replica: job finished after {record['retries']} retries, {_timings(record)}")


def test_job_survives_a_full_serve_restart(service, slow_model: str) -> None:
    from ray import serve

    from serve_app.app import build_app
    from tests.serve_app.conftest import app_args

    created = _submit(service, srt=LONG_SRT, seed=9, model=slow_model)
    job_id = created["id"]
    _wait(service, job_id, until=lambda r: r["done"] >= 1 or r["status"] in FINAL)
    started = time.monotonic()
    serve.shutdown()
    down_s = time.monotonic() - started
    try:
        on_disk = (service.storage / "jobs" / job_id / "job.json").read_text()
    finally:
        # Whatever happens here, the application comes back: the tests after this one use it.
        port = urlparse(service.url).port
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(app_args(service.storage)), name="voice", route_prefix="/")
        wait_for_http(f"{service.url}/health", 60)
    up_s = time.monotonic() - started - down_s
    assert '"status": "running"' in on_disk
    record = _wait(service, job_id)
    assert record["status"] == "succeeded", record
    assert record["attempts"] == 2 and record["resumed_from"] >= 1, record
    assert len(decode_audio(_get(service, record["audio_url"]).content, RATE)) / RATE == pytest.approx(39.5, abs=0.05)
    print(f"\nServe restart: shutdown {down_s:.1f} s, redeploy {up_s:.1f} s, resumed at unit {record['resumed_from']}")
    # The application is back as the fixture made it: other tests keep using it.
    assert _get(service, "/jobs").status_code == 200


def _timings(record: dict) -> str:
    t = record["timings"]
    return f"total {t['finished_at'] - t['created_at']:.1f} s, synth {t['synth_seconds']:.1f} s"


def test_tts_failures_are_classified() -> None:
    from ray.exceptions import ActorDiedError, RayTaskError
    from ray.serve.exceptions import BackPressureError

    from serve_app.jobs.runner import INTERNAL, TRANSIENT, classify_failure
    from voice_core.errors import InvalidInputError, OverloadedError

    bad_voice = InvalidInputError("unknown voice 'x'")
    assert classify_failure(RayTaskError("synthesize", "tb", bad_voice)) is bad_voice
    assert classify_failure(RayTaskError("synthesize", "tb", OverloadedError("full"))) == TRANSIENT
    assert classify_failure(RayTaskError("synthesize", "tb", RuntimeError("torch"))) == INTERNAL
    assert classify_failure(ActorDiedError()) == TRANSIENT
    assert classify_failure(BackPressureError(num_queued_requests=3, max_queued_requests=3)) == TRANSIENT
    assert classify_failure(KeyError("bug")) == INTERNAL
