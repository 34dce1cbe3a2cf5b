"""Every route that returns a stored file (training samples, dataset clips, job audio) refuses symlinks
that lead outside the storage root and AVS_ALLOWED_MOUNTS with a 404, and follows those into a mount."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from serve_app.datasets.service import DatasetStore
from serve_app.jobs.service import JobStore
from serve_app.training import service as training
from voice_core.errors import NotFoundError
from voice_core.storage import Storage


def _sample(storage: Storage) -> tuple[Path, Callable[[Storage], Path]]:
    run_dir = storage.runs / "r"
    (run_dir / "samples").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"identity": {}}))
    return run_dir / "samples" / "epoch_1.wav", lambda s: training.sample_path(s, "r", "epoch_1.wav")


def _clip(storage: Storage) -> tuple[Path, Callable[[Storage], Path]]:
    (storage.datasets / "ds" / "wavs").mkdir(parents=True)
    return storage.datasets / "ds" / "wavs" / "c-00001.wav", lambda s: DatasetStore(s).clip_path("ds", "c-00001")


def _job_result(storage: Storage) -> tuple[Path, Callable[[Storage], Path]]:
    (storage.jobs / "j1").mkdir()
    return storage.jobs / "j1" / "result.wav", lambda s: JobStore(s).result_file("j1", "wav")


KINDS = {"sample": _sample, "clip": _clip, "job result": _job_result}


@pytest.mark.parametrize("kind", KINDS)
def test_a_stored_file_is_served(storage: Storage, kind: str) -> None:
    path, serve = KINDS[kind](storage)
    path.write_bytes(b"RIFF")
    assert serve(storage) == path.resolve()


@pytest.mark.parametrize("kind", KINDS)
def test_a_link_outside_the_root_is_not_found(storage: Storage, tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"private")
    path, serve = KINDS[kind](storage)
    path.symlink_to(secret)
    with pytest.raises(NotFoundError) as info:
        serve(storage)
    assert info.value.status_code == 404
    assert str(tmp_path) not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_link_into_an_allowed_mount_is_served(storage: Storage, tmp_path: Path, kind: str) -> None:
    mount = tmp_path / "mount"
    mount.mkdir()
    (mount / "audio.wav").write_bytes(b"RIFF")
    path, serve = KINDS[kind](storage)
    path.symlink_to(mount / "audio.wav")
    assert serve(Storage(storage.root, (mount,))) == (mount / "audio.wav").resolve()
    with pytest.raises(NotFoundError):
        serve(storage)  # the same link without the mount allowed


def test_a_missing_run_is_named_without_server_paths(storage: Storage) -> None:
    with pytest.raises(NotFoundError) as info:
        training.sample_path(storage, "never", "epoch_1.wav")
    assert "storage/runs" in str(info.value) and str(storage.root) not in str(info.value)
