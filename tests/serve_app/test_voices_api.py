"""Stored voices over HTTP: create from uploads, list, read, synthesise with cached latents, delete."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import espeak
from voice_core.decode import decode_audio

pytestmark = pytest.mark.slow

SAMPLE_RATE = 24000


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("voices-api")
    return [
        espeak(folder / "one.wav", "This is the first reference recording of the new voice.").read_bytes(),
        espeak(folder / "two.wav", "Here is a second, different sentence for the same voice.").read_bytes(),
    ]


def latents_computed(client: httpx.Client) -> int:
    response = client.get("/health/engines")
    assert response.status_code == 200
    return response.json()["TTSDeployment"]["latents_computed"]


def test_voice_round_trip(service, client: httpx.Client, references: list[bytes]) -> None:
    before = latents_computed(client)
    response = client.post(
        "/voices",
        data={"name": "Narrator", "language": "pt-BR"},
        files=[("files", (f"ref{i}.wav", data, "audio/wav")) for i, data in enumerate(references)],
    )
    assert response.status_code == 201, response.text
    record = response.json()
    voice_id = record["id"]
    assert voice_id.startswith("voice-")
    assert record["name"] == "Narrator"
    assert record["language"] == "pt"
    assert len(record["references"]) == 2
    assert all(ref["seconds"] > 1 for ref in record["references"])
    assert latents_computed(client) == before + 1

    latents = service.storage / "voices" / voice_id / "latents" / "tiny-xtts.pt"
    assert latents.is_file()
    mtime = latents.stat().st_mtime_ns
    assert sorted(p.name for p in (service.storage / "voices" / voice_id / "refs").iterdir()) == [
        "ref_00.wav",
        "ref_01.wav",
    ]

    listing = client.get("/voices").json()["voices"]
    stored = [v for v in listing if v["id"] == voice_id]
    assert len(stored) == 1 and stored[0]["kind"] == "stored"
    assert {"id": "Claribel Dervla", "name": "Claribel Dervla", "kind": "builtin"} in listing

    fetched = client.get(f"/voices/{voice_id}")
    assert fetched.status_code == 200
    assert fetched.json()["name"] == "Narrator"
    assert fetched.json()["latents_for"] == ["tiny-xtts"]

    # Synthesis with the stored voice reuses the stored latents: nothing is computed again.
    tts = client.post("/tts", json={"text": "Spoken by the stored voice.", "voice": voice_id, "seed": 1})
    assert tts.status_code == 200, tts.text
    assert len(decode_audio(tts.content, SAMPLE_RATE)) > SAMPLE_RATE // 2
    speech = client.post(
        "/v1/audio/speech",
        json={
            "model": "tts-1",
            "voice": {"id": voice_id},
            "input": "Again, by id.",
            "response_format": "pcm",
            "seed": 1,
        },
    )
    assert speech.status_code == 200, speech.text
    assert len(speech.content) > SAMPLE_RATE
    assert latents_computed(client) == before + 1
    assert latents.stat().st_mtime_ns == mtime

    deleted = client.delete(f"/voices/{voice_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert not (service.storage / "voices" / voice_id).exists()
    missing = client.get(f"/voices/{voice_id}")
    assert missing.status_code == 404
    assert voice_id in missing.json()["error"]["message"]
    assert client.delete(f"/voices/{voice_id}").status_code == 404
    assert voice_id not in {v["id"] for v in client.get("/voices").json()["voices"]}
    gone = client.post("/tts", json={"text": "Nobody here.", "voice": voice_id})
    assert gone.status_code == 404
    assert gone.json()["error"]["type"] == "not_found"
    assert "unknown voice" in gone.json()["error"]["message"] and voice_id in gone.json()["error"]["message"]


def test_voice_needs_reference_audio(client: httpx.Client) -> None:
    response = client.post("/voices", data={"name": "Empty"})
    assert response.status_code == 400
    assert "files" in response.json()["error"]["message"]


def test_voice_with_too_many_files_is_rejected(service, client: httpx.Client, references: list[bytes]) -> None:
    voices = service.storage / "voices"
    existing = set(voices.iterdir()) if voices.is_dir() else set()
    files = [("files", (f"ref{i}.wav", references[0], "audio/wav")) for i in range(6)]
    response = client.post("/voices", data={"name": "Crowd"}, files=files)
    assert response.status_code == 400
    assert "at most 5" in response.json()["error"]["message"]
    assert (set(voices.iterdir()) if voices.is_dir() else set()) == existing


def test_voice_files_must_be_in_the_files_field(client: httpx.Client, references: list[bytes]) -> None:
    response = client.post("/voices", data={"name": "Misfiled"}, files={"audio": ("a.wav", references[0])})
    assert response.status_code == 400
    assert "'audio'" in response.json()["error"]["message"]


def test_stored_voice_keeps_its_files_in_storage(service, client: httpx.Client, references: list[bytes]) -> None:
    response = client.post("/voices", data={"name": "Kept"}, files={"files": ("one.wav", references[0])})
    assert response.status_code == 201, response.text
    directory: Path = service.storage / "voices" / response.json()["id"]
    assert (directory / "voice.json").is_file()
    reference = decode_audio(directory / "refs" / "ref_00.wav", 22050)
    assert abs(len(reference) / 22050 - response.json()["references"][0]["seconds"]) < 0.01
    assert client.delete(f"/voices/{directory.name}").status_code == 204
