"""Storage layout under one root, validated path components and atomic writes.

Layout::

    <root>/datasets/<name>/   data_prep output (LJSpeech layout)
    <root>/runs/<name>/       train_jobs runs (checkpoints, samples, TensorBoard)
    <root>/models/<id>/       model directories (release layout) and LoRA adapters
    <root>/voices/<id>/       reference audio and cached conditioning latents
    <root>/jobs/<id>/         long synthesis jobs (record + result)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from voice_core.errors import InvalidInputError, NotFoundError

_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The same rule for JSON schemas (OpenAPI): no lookaround, so '..' is excluded by construction; with maxLength 128.
COMPONENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*\.?$"
AREAS: tuple[str, ...] = ("datasets", "runs", "models", "voices", "jobs")


def validate_component(value: str, what: str = "name") -> str:
    """Check that a user-supplied value is safe as one path component.

    Args:
        value: the candidate (a model id, voice id, run name, ...).
        what: how the value is called in the error message (``"voice id"``).

    Returns:
        The value unchanged.

    Raises:
        InvalidInputError: the value is empty, too long, absolute, contains a separator or ``..``,
            or uses characters other than letters, digits, ``.``, ``_`` and ``-``.
    """
    if not isinstance(value, str) or not _COMPONENT.fullmatch(value) or ".." in value:
        raise InvalidInputError(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit, with no '/', '\\' or '..'"
        )
    return value


def is_within(path: Path, roots: list[Path]) -> bool:
    """Return whether ``path`` (resolved) lies inside one of ``roots`` (resolved)."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


@dataclass(frozen=True)
class Storage:
    """Typed access to the storage root.

    Attributes:
        root: absolute storage root.
        allowed_mounts: extra directories symlinks inside the root may point into.
    """

    root: Path
    allowed_mounts: tuple[Path, ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, settings: Any) -> Storage:
        """Build from a :class:`voice_core.settings.Settings`."""
        return cls(Path(settings.storage_root), tuple(settings.allowed_mounts))

    def ensure(self) -> Storage:
        """Create the root and its areas if missing; return self."""
        for area in AREAS:
            (self.root / area).mkdir(parents=True, exist_ok=True)
        return self

    @property
    def datasets(self) -> Path:
        """Directory of datasets."""
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        """Directory of training runs."""
        return self.root / "runs"

    @property
    def models(self) -> Path:
        """Directory of model directories and adapters."""
        return self.root / "models"

    @property
    def voices(self) -> Path:
        """Directory of stored voices."""
        return self.root / "voices"

    @property
    def jobs(self) -> Path:
        """Directory of synthesis job records."""
        return self.root / "jobs"

    def allowed_roots(self) -> list[Path]:
        """The root plus the allowed mounts: where resolved paths may lie."""
        return [self.root, *self.allowed_mounts]

    def shown(self, path: Path) -> str:
        """How messages name ``path``: ``storage/<relative path>`` inside the root, else its last component.

        Error messages reach HTTP clients, so they never carry the server's absolute paths.
        """
        try:
            relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(self.root))
        except ValueError:
            return Path(path).name
        return "storage" if relative == Path() else f"storage/{relative.as_posix()}"

    def _child(self, area: Path, name: str, what: str) -> Path:
        path = area / validate_component(name, what)
        # Checked whether or not the path exists: a directory created later under a symlinked parent
        # (or through a dangling link) must not land outside the root either.
        if not is_within(path, self.allowed_roots()):
            raise InvalidInputError(
                f"{what} {name!r} ({self.shown(path)}) resolves outside the storage root; replace the link "
                "with a directory inside the root or add its target to AVS_ALLOWED_MOUNTS"
            )
        return path

    def stored_file(self, path: Path, not_found: str | None = None) -> Path:
        """The regular file ``path`` with symlinks resolved, if it lies inside the allowed roots.

        Every route that returns a stored file goes through this one check.

        Args:
            path: a file under the storage root (it may be, or pass through, a symlink).
            not_found: the message of the error; the default names the storage-relative path.

        Returns:
            The resolved path (serve this one, so a link swapped after the check is not followed).

        Raises:
            NotFoundError: the file is missing, not a regular file, or resolves outside the storage
                root and AVS_ALLOWED_MOUNTS (the same answer, so links outside are not revealed).
        """
        try:
            resolved = Path(path).resolve(strict=True)
        except (OSError, RuntimeError):
            resolved = None
        if resolved is None or not resolved.is_file() or not is_within(resolved, self.allowed_roots()):
            raise NotFoundError(not_found or f"no file {self.shown(path)}")
        return resolved

    def dataset_dir(self, name: str) -> Path:
        """Directory of dataset ``name`` (validated)."""
        return self._child(self.datasets, name, "dataset name")

    def run_dir(self, name: str) -> Path:
        """Directory of run ``name`` (validated)."""
        return self._child(self.runs, name, "run name")

    def model_dir(self, model_id: str) -> Path:
        """Directory of model ``model_id`` (validated)."""
        return self._child(self.models, model_id, "model id")

    def voice_dir(self, voice_id: str) -> Path:
        """Directory of voice ``voice_id`` (validated)."""
        return self._child(self.voices, voice_id, "voice id")

    def job_dir(self, job_id: str) -> Path:
        """Directory of job ``job_id`` (validated)."""
        return self._child(self.jobs, job_id, "job id")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` and rename it over ``path`` on success.

    A crash or an exception leaves the old file (or nothing) in place, never a half-written one.

    Args:
        path: final destination.
        mode: ``"wb"`` or ``"w"``.

    Yields:
        The open temporary file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~current_umask())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Build a directory in a hidden temporary sibling and rename it to ``target`` on success.

    Readers never see a half-built directory; on an exception the temporary one is removed and
    ``target`` is untouched.

    Args:
        target: the final directory. It may exist only if empty, unless ``replace`` is true.
        replace: remove an existing ``target`` (and its contents) just before the rename.

    Yields:
        The temporary directory to fill.
    """
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield work
        work.chmod(0o777 & ~current_umask())
        if final.exists():
            if replace:
                shutil.rmtree(final)
            else:
                final.rmdir()
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def current_umask() -> int:
    """Return the process umask (mkstemp/mkdtemp ignore it, so atomic writes re-apply it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_writer(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON to ``path`` atomically (byte-stable output)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing, unreadable or not a JSON object.

    Records are replaced with :func:`atomic_write_json`, so a reader never sees half of one; None
    covers a file that does not exist (yet), or was removed or damaged.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_options_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object of an options file a user gave (``--config FILE``), or an error saying what is wrong.

    Raises:
        InvalidInputError: the file is unreadable, not JSON, or holds something other than an object.
    """
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise InvalidInputError(f"the config file {path} is not valid JSON ({exc}); write one JSON object") from None
    if not isinstance(values, dict):
        raise InvalidInputError(
            f"the config file {path} holds a JSON {type(values).__name__}, not an object of options"
        )
    return values
