"""Tests for voice_core.storage: path components, the layout, symlink escapes and atomic writes."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from voice_core.errors import InvalidInputError, NotFoundError
from voice_core.storage import (
    AREAS,
    Storage,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_writer,
    read_json,
    validate_component,
)


@pytest.mark.parametrize("value", ["my-voice_1.0", "abc", "A1", "x" * 128])
def test_validate_component_accepts(value: str) -> None:
    assert validate_component(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "../x", "..", "a/../b", "/etc/passwd", "a/b", "a\\b", ".hidden", "x" * 200, "a..b", "-x", "a b"],
)
def test_validate_component_rejects(value: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_component(value, "voice id")
    message = str(info.value)
    assert f"invalid voice id {value!r}" in message
    assert "letters, digits, '.', '_' or '-'" in message


@pytest.mark.parametrize("value", [None, 1, b"abc", Path("abc")])
def test_validate_component_rejects_non_str(value: object) -> None:
    with pytest.raises(InvalidInputError, match="letters, digits"):
        validate_component(value)  # type: ignore[arg-type]


def test_layout_paths(storage: Storage) -> None:
    assert storage.voice_dir("v1") == storage.root / "voices" / "v1"
    assert storage.model_dir("m1") == storage.root / "models" / "m1"
    assert storage.dataset_dir("d1") == storage.root / "datasets" / "d1"
    assert storage.run_dir("r1") == storage.root / "runs" / "r1"
    assert storage.job_dir("j1") == storage.root / "jobs" / "j1"
    with pytest.raises(InvalidInputError, match="invalid model id"):
        storage.model_dir("../outside")


def test_ensure_creates_the_areas(tmp_path: Path) -> None:
    root = tmp_path / "fresh-root"
    storage = Storage(root).ensure()
    assert sorted(p.name for p in root.iterdir()) == sorted(AREAS)
    assert len(AREAS) == 5
    assert all((root / area).is_dir() for area in AREAS)
    assert storage.ensure() is storage  # idempotent


def test_symlink_out_of_root_is_refused(storage: Storage, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "model"
    outside.mkdir(parents=True)
    (storage.models / "escaped").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidInputError) as info:
        storage.model_dir("escaped")
    message = str(info.value)
    assert "'escaped'" in message and "storage/models/escaped" in message
    assert "outside the storage root" in message
    assert "AVS_ALLOWED_MOUNTS" in message
    assert str(tmp_path) not in message  # no absolute server path reaches a client


def test_future_path_under_a_symlinked_parent_is_refused(storage: Storage, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.rmtree(storage.runs)
    storage.runs.symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidInputError, match="outside the storage root") as info:
        storage.run_dir("not-yet")  # does not exist: it would be created in ``outside``
    assert str(tmp_path) not in str(info.value)
    (storage.jobs / "dangling").symlink_to(outside / "later", target_is_directory=True)
    with pytest.raises(InvalidInputError, match="outside the storage root"):
        storage.job_dir("dangling")
    assert Storage(storage.root, (outside,)).run_dir("not-yet") == storage.runs / "not-yet"


def test_stored_file_serves_regular_files_inside_the_allowed_roots(storage: Storage, tmp_path: Path) -> None:
    inside = storage.jobs / "j1" / "result.wav"
    inside.parent.mkdir()
    inside.write_bytes(b"audio")
    assert storage.stored_file(inside) == inside.resolve()
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "clip.wav").write_bytes(b"mounted")
    (storage.jobs / "j1" / "linked.wav").symlink_to(mount / "clip.wav")
    allowed = Storage(storage.root, (mount,))
    assert allowed.stored_file(storage.jobs / "j1" / "linked.wav") == (mount / "clip.wav").resolve()


def test_stored_file_refuses_links_outside_missing_files_and_directories(storage: Storage, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    directory = storage.jobs / "j1"
    directory.mkdir()
    (directory / "escape.wav").symlink_to(secret)
    (directory / "dangling.wav").symlink_to(tmp_path / "nothing")
    outside_dir = tmp_path / "outside-dir"
    outside_dir.mkdir()
    (outside_dir / "result.wav").write_bytes(b"x")
    (directory / "sub").symlink_to(outside_dir, target_is_directory=True)
    for path in (
        directory / "escape.wav",
        directory / "dangling.wav",
        directory / "sub" / "result.wav",
        directory / "missing.wav",
        directory,
    ):
        with pytest.raises(NotFoundError) as info:
            storage.stored_file(path)
        assert str(tmp_path) not in str(info.value) and "storage/jobs/j1" in str(info.value), path
    with pytest.raises(NotFoundError, match=r"^no such clip$"):
        storage.stored_file(directory / "escape.wav", "no such clip")


def test_shown_names_paths_relative_to_storage(storage: Storage, tmp_path: Path) -> None:
    assert storage.shown(storage.runs / "x") == "storage/runs/x"
    assert storage.shown(storage.root) == "storage"
    assert storage.shown(tmp_path / "elsewhere" / "file.wav") == "file.wav"


def test_symlink_into_allowed_mount_is_accepted(storage: Storage, tmp_path: Path) -> None:
    mount = tmp_path / "elsewhere"
    (mount / "model").mkdir(parents=True)
    (storage.models / "mounted").symlink_to(mount / "model", target_is_directory=True)
    allowed = Storage(storage.root, (mount,))
    assert allowed.model_dir("mounted") == storage.models / "mounted"


def test_symlink_inside_root_is_accepted(storage: Storage) -> None:
    (storage.models / "real").mkdir()
    (storage.models / "alias").symlink_to(storage.models / "real", target_is_directory=True)
    assert storage.model_dir("alias") == storage.models / "alias"


def _leftovers(directory: Path, *keep: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def test_atomic_writes_content_and_no_temp_files(tmp_path: Path) -> None:
    directory = tmp_path / "out" / "nested"
    atomic_write_bytes(directory / "a.bin", b"\x00\x01binary")
    atomic_write_text(directory / "b.txt", "héllo\n")
    atomic_write_json(directory / "c.json", {"k": [1, 2], "name": "ü"})
    assert (directory / "a.bin").read_bytes() == b"\x00\x01binary"
    assert (directory / "b.txt").read_bytes() == "héllo\n".encode()
    assert (directory / "c.json").read_text(encoding="utf-8") == '{\n  "k": [\n    1,\n    2\n  ],\n  "name": "ü"\n}\n'
    assert _leftovers(directory) == ["a.bin", "b.txt", "c.json"]


def test_atomic_writer_exception_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "state.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="boom"), atomic_writer(target, "w") as handle:
        handle.write("new and half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == ["state.txt"]


def test_atomic_writer_exception_without_old_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_writer(tmp_path / "new.bin") as handle:
        handle.write(b"partial")
        raise RuntimeError("boom")
    assert _leftovers(tmp_path) == []


def test_atomic_write_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert _leftovers(tmp_path) == ["f.txt"]


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_respects_umask(tmp_path: Path, umask: int, expected: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
        atomic_write_json(tmp_path / "f.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "f.json").stat().st_mode) == expected


def test_atomic_write_json_is_byte_stable(tmp_path: Path) -> None:
    first = {"b": 1, "a": {"y": [1, 2], "x": None}, "c": "é"}
    second = {"c": "é", "a": {"x": None, "y": [1, 2]}, "b": 1}
    atomic_write_json(tmp_path / "1.json", first)
    atomic_write_json(tmp_path / "2.json", second)
    assert (tmp_path / "1.json").read_bytes() == (tmp_path / "2.json").read_bytes()
    assert (tmp_path / "1.json").read_bytes().endswith(b"}\n")


def test_read_json_returns_objects_and_none_for_missing_damaged_or_other_json(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "record.json", {"status": "done"})
    (tmp_path / "damaged.json").write_text('{"status": ', encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe")
    (tmp_path / "folder.json").mkdir()
    assert read_json(tmp_path / "record.json") == {"status": "done"}
    for name in ("missing.json", "damaged.json", "list.json", "binary.json", "folder.json"):
        assert read_json(tmp_path / name) is None, name
