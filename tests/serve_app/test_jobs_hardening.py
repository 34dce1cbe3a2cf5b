"""Hostile job and voice requests over HTTP: SRT numbers and sizes, concurrent deletes.

Kept apart from ``test_jobs.py`` (whose durability tests restart Serve) so it runs in a few seconds
on the session's service.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from voice_core.storage import atomic_write_json

pytestmark = pytest.mark.slow

TIMING = "00:00:01,000 --> 00:00:02,000"
BAD_SRTS = {
    "huge hours": (f"1\n{'9' * 400}:00:00,000 --> {'9' * 400}:00:01,000\nHi\n", r"SRT line 2: .*MAX_JOB_AUDIO"),
    "far cue": ("1\n00:00:01,000 --> 00:00:02,000\nHi\n\n2\n99999:00:00,000 --> 99999:00:01,000\nYo\n", r"SRT line 6"),
    "superscript number": (f"\u00b2\n{TIMING}\nHi\n", r"SRT line 1: expected a cue number"),
    "arabic digit": ("1\n00:00:0\u0661,000 --> 00:00:02,000\nHi\n", r"SRT line 2: expected a timestamp"),
}


def _post(service, **kwargs) -> httpx.Response:
    return httpx.post(f"{service.url}/jobs", headers=service.headers, timeout=120, **kwargs)


def _jobs(service) -> set[str]:
    return {path.name for path in (service.storage / "jobs").iterdir()}


@pytest.mark.parametrize("case", sorted(BAD_SRTS))
@pytest.mark.parametrize("how", ["json", "multipart"])
def test_bad_srt_numbers_are_a_400_naming_the_line(service, case: str, how: str) -> None:
    srt, pattern = BAD_SRTS[case]
    before = _jobs(service)
    if how == "json":
        response = _post(service, json={"srt": srt})
    else:
        response = _post(service, files={"srt": ("subs.srt", srt.encode())})
    assert response.status_code == 400, response.text
    assert re.search(pattern, response.json()["error"]["message"]), response.json()
    assert _jobs(service) == before


@pytest.mark.timeout(120)
def test_a_hostile_markup_field_is_refused_without_stalling_the_service(service) -> None:
    # 400,000 unclosed '<': quadratic markup stripping took minutes on the event loop.
    response = _post(service, json={"srt": f"1\n{TIMING}\nHi {'<' * 400_000}\n"})
    assert response.status_code == 413, response.text
    assert "AVS_MAX_JOB_CHARS" in response.json()["error"]["message"]
    assert httpx.get(f"{service.url}/health", timeout=30).status_code == 200


def test_an_srt_text_larger_than_an_upload_is_refused_before_parsing(service) -> None:
    srt = f"1\n{TIMING}\n{'x' * 20_000_001}\n"  # default AVS_MAX_UPLOAD_BYTES is 20,000,000
    response = _post(service, json={"srt": srt})
    assert response.status_code == 413, response.text
    assert "AVS_MAX_UPLOAD_BYTES" in response.json()["error"]["message"]


def test_concurrent_deletes_of_one_voice_give_one_204_and_404s(service) -> None:
    voice_id = "voice-0000deadbeef"
    directory = service.storage / "voices" / voice_id
    directory.mkdir(parents=True)
    atomic_write_json(directory / "voice.json", {"id": voice_id, "name": "x", "created_at": 0.0, "references": []})

    def delete(_: int) -> int:
        return httpx.delete(f"{service.url}/voices/{voice_id}", headers=service.headers, timeout=60).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(delete, range(4)))
    assert statuses == [204, 404, 404, 404], statuses
    assert not directory.exists()
