"""The official XTTS-v2 release: fetched into the models directory only with licence agreement."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from voice_core.errors import DownloadError, LicenseNotAcceptedError, ModelFilesMissingError
from voice_core.settings import XTTS_RELEASE_FILES, Settings
from voice_core.storage import Storage, atomic_writer

RELEASE_MODEL_ID = "xtts-v2"
LICENSE_URL = "https://coqui.ai/cpml"


def missing_release_files(directory: Path) -> list[str]:
    """Return the release files absent from ``directory`` (dangling links count as absent)."""
    return [name for name in XTTS_RELEASE_FILES if not (directory / name).is_file()]


def _placement_hint(directory: Path, missing: list[str], base_url: str) -> str:
    names = "\n".join(f"  - {directory / name}   (from {base_url}/{name})" for name in missing)
    return f"Place these files of the official XTTS-v2 release there:\n{names}"


def ensure_release(settings: Settings, storage: Storage, *, progress: bool = True) -> Path:
    """Return the official release directory, downloading missing files when allowed.

    Args:
        settings: needs ``coqui_tos_agreed``, ``download_release`` and ``release_url``.
        storage: where ``models/xtts-v2`` lives.
        progress: show a progress bar per file.

    Returns:
        ``<storage>/models/xtts-v2`` with every release file present.

    Raises:
        LicenseNotAcceptedError: files are missing and the licence was not agreed to.
        ModelFilesMissingError: files are missing and downloads are switched off.
        DownloadError: a download failed (offline, HTTP error, short read).
    """
    directory = storage.models / RELEASE_MODEL_ID
    missing = missing_release_files(directory)
    if not missing:
        return directory
    hint = _placement_hint(directory, missing, settings.release_url)
    if not settings.coqui_tos_agreed:
        raise LicenseNotAcceptedError(
            f"the official XTTS-v2 weights are not in {directory}. They are under the Coqui Public Model "
            f"License ({LICENSE_URL}, non-commercial). If you agree, set AVS_COQUI_TOS_AGREED=true to "
            f"download them, or:\n{hint}"
        )
    if not settings.download_release:
        raise ModelFilesMissingError(
            f"the official XTTS-v2 weights are not in {directory} and AVS_DOWNLOAD_RELEASE=false.\n{hint}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for name in missing:
        _download(f"{settings.release_url.rstrip('/')}/{name}", directory / name, progress=progress, hint=hint)
    return directory


def _download(url: str, target: Path, *, progress: bool, hint: str) -> None:
    from tqdm import tqdm

    try:
        with atomic_writer(target) as out, urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0)
            with tqdm(total=total or None, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
            written = out.tell()
            if total and written != total:
                # Raised inside the writer, so the partial file is discarded and the target never appears.
                raise DownloadError(f"{url}: got {written} of {total} bytes; try again.\n{hint}")
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"could not download {url}: the server answered HTTP {exc.code} {exc.reason}; check "
            f"AVS_RELEASE_URL.\n{hint}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"could not download {url} ({reason}); this machine may be offline.\n{hint}") from None
