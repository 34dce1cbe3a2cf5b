"""Tests for voice_core.storage: path components, the layout, symlink escapes and atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from voice_core.errors import InvalidInputError
from voice_core.storage import (
    AREAS,
    Storage,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_writer,
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
    assert "'escaped'" in message
    assert str(outside.resolve()) in message
    assert "outside the storage root" in message
    assert "AVS_ALLOWED_MOUNTS" in message


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
