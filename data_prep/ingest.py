"""Finding the input recordings: directories, files, globs and (with yt-dlp) URLs.

Nothing here decodes audio. Inputs are expanded to files, each file is probed (opened and its
audio stream found) and hashed, and gets a source id: its sanitised stem, made unique. Files that
cannot be used become source records with a reason instead of errors, so one bad file never stops
a run.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from data_prep.records import UNREADABLE, UNSUPPORTED, SourceRecord
from voice_core.decode import probe_duration
from voice_core.errors import AudioDecodeError, InvalidInputError

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".mp4", ".mkv", ".webm", ".mov"}
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SourceFile:
    """A recording that will be (or was) analysed.

    Attributes:
        source_id: unique id, the prefix of its clip ids.
        path: absolute path of the file.
        sha256: hash of its bytes.
        duration_s: length from the container header (0 when the header does not say).
        origin: the URL it was downloaded from, if any.
    """

    source_id: str
    path: Path
    sha256: str
    duration_s: float
    origin: str = ""


def is_url(value: str) -> bool:
    """Whether an input names a URL rather than a path or glob."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value))


def sanitize_stem(stem: str) -> str:
    """Turn a file stem into a safe id prefix (letters, digits, ``.``, ``_``, ``-``; starts alphanumeric)."""
    cleaned = _UNSAFE.sub("_", stem).strip("._-")[:100]
    return cleaned or "source"


def expand_inputs(inputs: Sequence[str], download_dir: Path) -> tuple[list[tuple[Path, str]], list[SourceRecord]]:
    """Expand directories, globs, files and URLs into candidate audio files.

    Args:
        inputs: what the user named.
        download_dir: where URL downloads go.

    Returns:
        ``(files, issues)``: ``(absolute path, origin URL or "")`` pairs sorted by path without
        repeats, and records of inputs that cannot be used (missing paths, non-audio files found
        in directories).

    Raises:
        InvalidInputError: a URL was given but yt-dlp is not installed.
    """
    found: dict[Path, str] = {}
    issues: list[SourceRecord] = []
    for item in inputs:
        if is_url(item):
            found.setdefault(fetch_url(item, download_dir), item)
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in child.relative_to(path).parts):
                    continue
                if child.suffix.lower() in AUDIO_EXTENSIONS:
                    found.setdefault(child.resolve(), "")
                else:
                    issues.append(_unsupported(child))
        elif path.is_file():
            found.setdefault(path.resolve(), "")
        else:
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                issues.append(
                    SourceRecord(
                        source_id=sanitize_stem(path.stem),
                        path=str(path),
                        status=UNREADABLE,
                        reason="no such file, directory or matching glob",
                    )
                )
            for match in matches:
                found.setdefault(match.resolve(), "")
    return sorted(found.items()), issues


def _unsupported(path: Path) -> SourceRecord:
    return SourceRecord(
        source_id=sanitize_stem(path.stem),
        path=str(path.resolve()),
        status=UNSUPPORTED,
        reason=f"not an audio file (extension {path.suffix or '(none)'!r}; "
        f"accepted: {', '.join(sorted(AUDIO_EXTENSIONS))})",
    )


def fetch_url(url: str, download_dir: Path) -> Path:
    """Download the audio of ``url`` with yt-dlp.

    Args:
        url: a page or media URL yt-dlp understands.
        download_dir: where the file goes (named by the media id, so a second run reuses it).

    Returns:
        The downloaded file.

    Raises:
        InvalidInputError: yt-dlp is not installed, or the download failed.
    """
    if importlib.util.find_spec("yt_dlp") is None:
        raise InvalidInputError(
            f"cannot fetch {url!r}: URL inputs need yt-dlp, which is not installed (this build works offline). "
            "Install it with 'pip install yt-dlp' on a machine with network access, or download the audio "
            "yourself and pass the file."
        )
    import yt_dlp

    download_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "format": "bestaudio/best",
        "outtmpl": str(download_dir / "%(id)s.%(ext)s"),
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
    }
    try:
        with yt_dlp.YoutubeDL(options) as downloader:
            info = downloader.extract_info(url, download=True)
            return Path(downloader.prepare_filename(info)).resolve()
    except Exception as exc:  # yt-dlp raises its own DownloadError and assorted network errors
        raise InvalidInputError(f"could not download {url!r}: {exc}") from exc


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def identify_sources(
    files: Iterable[tuple[Path, str]], known: dict[str, SourceRecord]
) -> tuple[list[SourceFile], list[SourceRecord]]:
    """Probe, hash and name candidate files.

    A source's id is its sanitised stem. When that id belongs to another recording (another path
    with other bytes, in this run or an earlier one), the first 8 hex digits of the file's hash are
    appended. The same path with new bytes keeps its id and is analysed again.

    Args:
        files: ``(path, origin)`` pairs in a stable order.
        known: records of sources analysed by earlier runs, by id.

    Returns:
        ``(sources, issues)``: usable files with their ids, and records of files that cannot be
        opened as audio or repeat another input's bytes.
    """
    taken: dict[str, tuple[str, str]] = {sid: (rec.path, rec.sha256) for sid, rec in known.items()}
    sources: list[SourceFile] = []
    issues: list[SourceRecord] = []
    seen_hashes: dict[str, str] = {}
    for path, origin in files:
        base = sanitize_stem(path.stem)
        try:
            duration_s = probe_duration(path)
            sha = file_sha256(path)
        except (AudioDecodeError, OSError) as exc:
            issues.append(
                SourceRecord(source_id=base, path=str(path), status=UNREADABLE, reason=str(exc), origin=origin)
            )
            continue
        if sha in seen_hashes:
            issues.append(
                SourceRecord(
                    source_id=base,
                    path=str(path),
                    status=UNREADABLE,
                    reason=f"same bytes as {seen_hashes[sha]} (given twice)",
                    sha256=sha,
                    origin=origin,
                )
            )
            continue
        seen_hashes[sha] = str(path)
        source_id = base
        holder = taken.get(base)
        if holder is not None and holder[1] != sha and holder[0] != str(path):
            source_id = f"{base}_{sha[:8]}"
        taken[source_id] = (str(path), sha)
        sources.append(SourceFile(source_id, path, sha, round(duration_s, 3), origin))
    return sources, issues
