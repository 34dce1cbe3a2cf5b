"""Finding and naming inputs, the model resolver and the dataset files' format."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from data_prep import ingest
from data_prep.export import eval_score, metadata_text, split_ids
from data_prep.records import UNREADABLE, UNSUPPORTED, ClipRecord, SourceRecord
from data_prep.transcribe import BASE_MODEL_SHA256, resolve_model
from voice_core.errors import ConfigError, InvalidInputError, ModelError


def test_expand_inputs_walks_directories_and_globs(speech_wav: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / ".hidden").mkdir()
    for target in (data / "one.wav", data / "sub" / "two.wav", data / ".hidden" / "x.wav"):
        target.write_bytes(speech_wav.read_bytes())
    (data / "readme.md").write_text("notes")
    files, issues = ingest.expand_inputs([str(data), str(data / "*.wav"), str(tmp_path / "nope*.wav")], tmp_path)
    assert [path.name for path, _ in files] == ["one.wav", "two.wav"]
    assert [(issue.status, Path(issue.path).name) for issue in issues] == [
        (UNSUPPORTED, "readme.md"),
        (UNREADABLE, "nope*.wav"),
    ]
    assert "not an audio file" in issues[0].reason


def test_urls_need_yt_dlp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ingest.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InvalidInputError, match="yt-dlp, which is not installed"):
        ingest.expand_inputs(["https://example.com/watch?v=abc"], tmp_path)


def test_source_ids_are_sanitised_and_unique(speech_wav: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = tmp_path / "a" / "My Talk (1).wav"
    second = tmp_path / "b" / "My Talk (1).wav"
    first.write_bytes(speech_wav.read_bytes())
    second.write_bytes(speech_wav.read_bytes() + b"\0\0")
    copy = tmp_path / "b" / "copy.wav"
    copy.write_bytes(first.read_bytes())
    broken = tmp_path / "b" / "broken.wav"
    broken.write_bytes(b"RIFF....not really")
    files = [(p.resolve(), "") for p in (first, second, copy, broken)]
    sources, issues = ingest.identify_sources(files, {})
    sha2 = hashlib.sha256(second.read_bytes()).hexdigest()
    assert [s.source_id for s in sources] == ["My_Talk_1", f"My_Talk_1_{sha2[:8]}"]
    assert [(i.source_id, i.status) for i in issues] == [("copy", UNREADABLE), ("broken", UNREADABLE)]
    assert "same bytes as" in issues[0].reason
    # An earlier run knew this id with the same path but other bytes: the file changed, keep its id.
    known = {"My_Talk_1": SourceRecord("My_Talk_1", str(second.resolve()), sha256="0" * 64)}
    sources, _ = ingest.identify_sources([(second.resolve(), "")], known)
    assert sources[0].source_id == "My_Talk_1"


def test_splits_are_stable_when_clips_are_added() -> None:
    ids = [f"talk-{i:05d}" for i in range(40)]
    train, evaluation = split_ids(ids, 0.1)
    assert sorted(train + evaluation) == ids and evaluation and not set(train) & set(evaluation)
    assert split_ids(list(reversed(ids)), 0.1) == (train, evaluation)
    more_train, more_eval = split_ids([*ids, *(f"more-{i:05d}" for i in range(40))], 0.1)
    assert set(evaluation) <= set(more_eval) and set(train) <= set(more_train)
    assert all(eval_score(i) < 0.1 for i in evaluation)
    assert split_ids(["only-00000"], 0.1) == (["only-00000"], [])


def test_metadata_lines_are_ljspeech() -> None:
    clips = [
        ClipRecord("b-00001", "b", 1, 0, 1, text="Two | pipes\nnewline", normalized_text="two pipes"),
        ClipRecord("a-00000", "a", 0, 0, 1, text="It's 5.", normalized_text="It's five."),
    ]
    assert metadata_text(clips) == "a-00000|It's 5.|It's five.\nb-00001|Two pipes newline|two pipes\n"


def test_model_resolver(tmp_path: Path) -> None:
    tiny = resolve_model("tiny.en", tmp_path)
    assert (tiny.path / "model.bin").is_file() and not tiny.multilingual
    with pytest.raises(ConfigError, match="never downloaded"):
        resolve_model("large-v3", tmp_path)
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(ModelError, match="lacks"):
        resolve_model(str(tmp_path / "empty-model"), tmp_path)
    assert resolve_model(str(tiny.path), tmp_path).path == tiny.path


def test_base_model_is_joined_once_and_verified(tmp_path: Path) -> None:
    base = resolve_model("base", tmp_path)
    assert base.multilingual and base.path.parent == tmp_path
    model = base.path / "model.bin"
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert digest == BASE_MODEL_SHA256
    mtime = model.stat().st_mtime_ns
    assert resolve_model("base", tmp_path).path == base.path
    assert model.stat().st_mtime_ns == mtime  # not joined again
