"""``manifest.json`` for model directories: files with sizes and sha256, plus metadata."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from voice_core.errors import CorruptCheckpointError
from voice_core.storage import atomic_write_json

MANIFEST_NAME = "manifest.json"


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(model_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Hash every file of ``model_dir`` (except the manifest) and write ``manifest.json``.

    Args:
        model_dir: the directory to describe.
        meta: extra keys stored at the top level (model id, kind, base model, training config...).

    Returns:
        The manifest as written.
    """
    files = {
        path.relative_to(model_dir).as_posix(): {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        for path in sorted(model_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }
    manifest = {**meta, "files": files, "total_bytes": sum(f["bytes"] for f in files.values())}
    atomic_write_json(model_dir / MANIFEST_NAME, manifest)
    return manifest


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """Return the parsed manifest of ``model_dir``, or None when it has none."""
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CorruptCheckpointError(f"{path} is not valid JSON ({exc}); re-export the model") from None


def verify_manifest(model_dir: Path) -> list[str]:
    """Check every file listed in the manifest against its size and sha256.

    Args:
        model_dir: a directory holding ``manifest.json``.

    Returns:
        Problems found, one readable line each; empty when everything matches.
    """
    manifest = read_manifest(model_dir)
    if manifest is None:
        return [f"{model_dir / MANIFEST_NAME} is missing"]
    problems = []
    for name, expected in manifest.get("files", {}).items():
        path = model_dir / name
        if not path.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
        elif path.stat().st_size != expected["bytes"]:
            problems.append(f"{name}: {path.stat().st_size} bytes, manifest says {expected['bytes']}")
        elif sha256_file(path) != expected["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest")
    return problems
