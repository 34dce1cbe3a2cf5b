"""Where ``score-set`` finds its clips: a JSON manifest, or a folder of audio files with text beside them.

Manifest: a JSON list of objects ``{"clip": PATH, "text": T, "language": L, "reference": PATH, "id": ID}``,
or an object ``{"language": L, "reference": PATH, "clips": [...]}`` whose ``language`` and ``reference``
are the defaults of its clips. Relative paths are relative to the manifest's folder; ``id`` defaults to
the clip's file stem.

Folder: every ``*.wav``, ``*.flac``, ``*.mp3`` and ``*.ogg`` file whose ``<stem>.txt`` holds its text
(files without one are an error; the reference itself is skipped), sorted by name; the language and
reference come from the command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voice_core.errors import InvalidInputError
from voice_eval.pipeline import EvalItem

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
_ITEM_KEYS = {"clip", "text", "language", "reference", "id"}


def _item(entry: Any, where: str, base: Path, defaults: dict[str, Any]) -> EvalItem:
    if not isinstance(entry, dict):
        raise InvalidInputError(f"{where} is {type(entry).__name__}; give an object with clip, text, language")
    unknown = set(entry) - _ITEM_KEYS
    if unknown:
        raise InvalidInputError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(_ITEM_KEYS)}")
    values = defaults | entry
    missing = [key for key in ("clip", "text", "language", "reference") if not values.get(key)]
    if missing:
        raise InvalidInputError(f"{where} lacks {', '.join(missing)}")
    clip = base / str(values["clip"])
    return EvalItem(
        clip=str(clip),
        text=str(values["text"]),
        language=str(values["language"]),
        reference=str(base / str(values["reference"])),
        id=str(values.get("id") or clip.stem),
    )


def from_manifest(path: str | Path, language: str | None = None, reference: str | None = None) -> list[EvalItem]:
    """The items of a manifest file (``language`` and ``reference`` fill in what it leaves out).

    Raises:
        InvalidInputError: the file is missing, not JSON, or an entry is malformed (named by its position).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"manifest {str(path)!r} does not exist; give a JSON file of clips") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"manifest {str(path)!r} is not JSON: {exc}") from None
    defaults = {"language": language, "reference": reference}
    defaults = {key: value for key, value in defaults.items() if value}
    if isinstance(data, dict):
        defaults |= {key: data[key] for key in ("language", "reference") if key in data}
        data = data.get("clips")
    if not isinstance(data, list):
        raise InvalidInputError(f"manifest {str(path)!r} holds no list of clips (a list, or an object with 'clips')")
    return [_item(entry, f"manifest entry {i}", path.parent, defaults) for i, entry in enumerate(data)]


def from_folder(folder: str | Path, language: str, reference: str) -> list[EvalItem]:
    """The audio files of ``folder`` with their ``<stem>.txt`` texts.

    Raises:
        InvalidInputError: the folder is missing or holds no audio, or a clip has no text file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(f"folder {str(folder)!r} does not exist; give a folder of clips")
    skip = Path(reference).resolve()
    clips = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file() and p.resolve() != skip
    )
    if not clips:
        raise InvalidInputError(f"folder {str(folder)!r} holds no {'/'.join(AUDIO_SUFFIXES)} files")
    items = []
    for clip in clips:
        text_file = clip.with_suffix(".txt")
        if not text_file.is_file():
            raise InvalidInputError(f"clip {str(clip)!r} has no text file {text_file.name!r} beside it")
        items.append(EvalItem(str(clip), text_file.read_text(encoding="utf-8").strip(), language, reference, clip.stem))
    return items
