"""VoiceStore on disk without Ray or a model: concurrent deletes."""

from __future__ import annotations

import threading

import pytest

from serve_app.voices.service import VoiceStore
from voice_core.errors import NotFoundError
from voice_core.storage import Storage, atomic_write_json


def make_voice(storage: Storage, voice_id: str) -> None:
    """A minimal stored voice (its record only), enough for get and delete."""
    directory = storage.voice_dir(voice_id)
    directory.mkdir(parents=True)
    atomic_write_json(directory / "voice.json", {"id": voice_id, "name": "x", "created_at": 0.0, "references": []})


def test_two_concurrent_deletes_give_one_success_and_one_not_found(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_voice(storage, "voice-aaaaaaaaaaaa")
    store = VoiceStore(storage)
    both_checked = threading.Barrier(2, timeout=10)
    get = VoiceStore.get

    def get_then_wait(self: VoiceStore, voice_id: str) -> dict:
        record = get(self, voice_id)
        both_checked.wait()  # both deletes have seen the voice before either removes it
        return record

    monkeypatch.setattr(VoiceStore, "get", get_then_wait)
    outcomes: list[object] = []

    def delete() -> None:
        try:
            store.delete("voice-aaaaaaaaaaaa")
            outcomes.append("deleted")
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=delete) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert "deleted" in outcomes and len(outcomes) == 2, outcomes
    (other,) = [outcome for outcome in outcomes if outcome != "deleted"]
    assert isinstance(other, NotFoundError), repr(other)
    assert "voice-aaaaaaaaaaaa" in str(other)
    assert not storage.voice_dir("voice-aaaaaaaaaaaa").exists()
    assert [p.name for p in storage.voices.iterdir()] == []
