"""Weights files: cheap validation, safe reading, key-prefix normalisation and the one listing.

Everything that shows checkpoints (API, UI, CLIs) calls :func:`list_checkpoints` (a run's view of it:
:func:`training_checkpoints`); everything that reads weights calls :func:`read_state_dict`.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from voice_core.errors import CheckpointMismatchError, CorruptCheckpointError, DanglingSymlinkError
from voice_core.storage import validate_component

WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt")
# training_state.pt: optimizer and scheduler state next to a training checkpoint's weights.
AUXILIARY_FILES: frozenset[str] = frozenset({"dvae.pth", "mel_stats.pth", "speakers_xtts.pth", "training_state.pt"})
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# A training run's checkpoint directories and the record training writes into each one.
TRAINING_CHECKPOINT_PREFIX = "checkpoint_"
TRAINING_RECORD = "avs_checkpoint.json"
# What the run views (API run detail, ``python -m train_jobs checkpoints``) show of each checkpoint.
TRAINING_COLUMNS: tuple[str, ...] = ("name", "step", "epoch", "eval_loss", "train_loss", "epoch_end")

# Prefixes added by wrappers around the model, stripped in this order of recognition.
KEY_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.", "xtts.", "model.", "ema_model.", "model_ema.", "ema.")
EMA_PREFIXES: frozenset[str] = frozenset({"ema_model.", "model_ema.", "ema."})
# Top-level modules of coqui's GPTTrainer that inference does not use.
TRAINER_ONLY_ROOTS: frozenset[str] = frozenset(
    {"dvae", "torch_mel_spectrogram_style_encoder", "torch_mel_spectrogram_dvae"}
)
# EMA containers first: like EMA key prefixes, EMA copies win over plain weights.
CONTAINER_KEYS: tuple[str, ...] = ("ema_model", "model_ema", "model", "state_dict")


def check_link(path: Path, allowed_roots: list[Path] | None = None) -> None:
    """Raise if ``path`` is a symlink that dangles or leads outside ``allowed_roots``.

    Args:
        path: the file to check (need not exist).
        allowed_roots: directories the resolved target must lie in; None skips that check.

    Raises:
        DanglingSymlinkError: naming the link, its target and the fix.
    """
    if not path.is_symlink():
        return
    target = Path(os.readlink(path))
    resolved = path.resolve()
    if not resolved.exists():
        raise DanglingSymlinkError(
            f"{path} is a symlink to {target}, which does not exist (resolved: {resolved}). "
            "Mount the directory holding the target into this machine/container, or replace the link "
            "with the file itself."
        )
    if allowed_roots is not None and not any(resolved.is_relative_to(r.resolve()) for r in allowed_roots):
        roots = ", ".join(str(r) for r in allowed_roots)
        raise DanglingSymlinkError(
            f"{path} is a symlink to {resolved}, outside the storage root and allowed mounts ({roots}). "
            "Copy the file into the storage root or add its directory to AVS_ALLOWED_MOUNTS."
        )


def sniff_weights_file(path: Path) -> str:
    """Check a weights file's structure without loading tensors.

    Args:
        path: a ``.pth``/``.pt``/``.safetensors`` file (symlinks followed).

    Returns:
        ``"torch-zip"``, ``"torch-legacy"`` or ``"safetensors"``.

    Raises:
        CorruptCheckpointError: empty, unreadable, truncated, or not a checkpoint.
    """
    if path.is_dir():
        raise CorruptCheckpointError(f"{path} is a directory, expected a weights file")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
    except PermissionError:
        raise CorruptCheckpointError(f"{path} cannot be read (permission denied); fix its permissions") from None
    except OSError as exc:
        raise CorruptCheckpointError(f"{path} cannot be read ({exc.strerror})") from None
    if size == 0:
        raise CorruptCheckpointError(f"{path} is empty (0 bytes); re-copy or re-export it")
    if path.suffix == ".safetensors" or not head.startswith((b"PK", b"\x80")):
        return _sniff_safetensors(path, size, head)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            raise CorruptCheckpointError(
                f"{path} is a damaged PyTorch checkpoint ({size} bytes, no zip directory at its end): it was "
                "probably truncated by an interrupted copy or download; copy it again"
            ) from None
        if not any(name.endswith("data.pkl") for name in names):
            raise CorruptCheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl)")
        return "torch-zip"
    return "torch-legacy"


def _sniff_safetensors(path: Path, size: int, head: bytes) -> str:
    not_checkpoint = CorruptCheckpointError(
        f"{path} is not a PyTorch checkpoint or safetensors file (it starts with {head[:8]!r}); "
        "point to a .pth/.pt/.safetensors file written by torch.save or safetensors"
    )
    if len(head) < 8:
        raise not_checkpoint
    (header_len,) = struct.unpack("<Q", head)
    if header_len <= 0 or header_len > min(size - 8, 100_000_000):
        raise not_checkpoint
    with path.open("rb") as handle:
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_len))
        except (ValueError, UnicodeDecodeError):
            raise not_checkpoint from None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and "data_offsets" in v]
    if ends and 8 + header_len + max(ends) > size:
        raise CorruptCheckpointError(
            f"{path} is a truncated safetensors file ({size} bytes, its header needs "
            f"{8 + header_len + max(ends)}); copy it again"
        )
    return "safetensors"


def read_raw_checkpoint(path: Path) -> tuple[Any, str]:
    """Load a weights file after sniffing it, with torch's safe unpickler.

    Returns:
        The loaded object and its format name.

    Raises:
        CorruptCheckpointError: the file cannot be loaded; the message is one line, not a traceback.
    """
    fmt = sniff_weights_file(path)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), fmt
        except Exception as exc:  # safetensors raises its own error types
            raise CorruptCheckpointError(f"{path} could not be read as safetensors: {_first_line(exc)}") from None
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True), fmt
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError ...
        raise CorruptCheckpointError(
            f"{path} could not be loaded as a PyTorch checkpoint: {_first_line(exc)}. "
            "If it was copied or downloaded, it may be incomplete; copy it again"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def extract_state_dict(obj: Any, path: Path) -> tuple[dict[str, Any], list[str]]:
    """Find the tensor mapping inside a loaded checkpoint (bare, or under a container key).

    Returns:
        The state dict and notes naming the container key used, if any.
    """
    import torch

    def is_state_dict(value: Any) -> bool:
        return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())

    if is_state_dict(obj):
        return dict(obj), []
    if isinstance(obj, dict):
        for key in CONTAINER_KEYS:
            if is_state_dict(obj.get(key)):
                # 'model' is the release layout; any other container is worth a line in the load log.
                note = [] if key == "model" else [f"weights taken from the checkpoint's '{key}' entry"]
                return dict(obj[key]), note
    keys = ", ".join(sorted(map(str, obj))[:10]) if isinstance(obj, dict) else type(obj).__name__
    raise CorruptCheckpointError(
        f"{path} holds no model weights (top-level entries: {keys}); expected a state dict or one under "
        f"{', '.join(repr(k) for k in CONTAINER_KEYS)}"
    )


def normalise_keys(
    state_dict: dict[str, Any], expected_roots: frozenset[str] = frozenset({"gpt", "hifigan_decoder"})
) -> tuple[dict[str, Any], list[str]]:
    """Strip wrapper prefixes (``module.``, ``xtts.``, ``model.``, EMA) and drop trainer-only keys.

    When a checkpoint holds both EMA and plain copies of the same weight, the EMA copy is used.

    Args:
        state_dict: raw key -> tensor mapping.
        expected_roots: first key components the model owns; stripping stops once one is reached.

    Returns:
        The normalised mapping and one note per rule applied (with key counts), for the load log.
    """
    stripped: Counter[str] = Counter()
    dropped = 0
    plain: dict[str, Any] = {}
    ema: dict[str, Any] = {}
    for key, value in state_dict.items():
        name, chain, from_ema = key, [], False
        while name.split(".", 1)[0] not in expected_roots:
            prefix = next((p for p in KEY_PREFIXES if name.startswith(p)), None)
            if prefix is None:
                break
            chain.append(prefix)
            from_ema = from_ema or prefix in EMA_PREFIXES
            name = name[len(prefix) :]
        if chain:
            stripped["".join(chain)] += 1
        if name.split(".", 1)[0] in TRAINER_ONLY_ROOTS:
            dropped += 1
            continue
        (ema if from_ema else plain)[name] = value
    notes = [f"stripped prefix '{chain}' from {count} keys" for chain, count in sorted(stripped.items())]
    if dropped:
        notes.append(f"dropped {dropped} trainer-only keys ({', '.join(sorted(TRAINER_ONLY_ROOTS))})")
    if ema and plain:
        replaced = len(plain.keys() & ema.keys())
        notes.append(f"EMA weights used: {replaced} plain duplicates replaced by their EMA copies")
    return {**plain, **ema}, notes


def check_state_dict(state_dict: dict[str, Any], model_state: dict[str, Any], source: Path) -> None:
    """Compare checkpoint tensors with a model's, raising one readable error on mismatch.

    Keys of coqui's inference wrapper (``gpt.gpt_inference.*``) are ignored on both sides.

    Raises:
        CheckpointMismatchError: missing keys, unexpected keys or shape differences, listed.
    """

    def relevant(keys: Any) -> set[str]:
        return {k for k in keys if not k.startswith("gpt.gpt_inference.")}

    have, want = relevant(state_dict), relevant(model_state)
    missing, unexpected = sorted(want - have), sorted(have - want)
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(model_state[k].shape)}"
        for k in sorted(have & want)
        if tuple(state_dict[k].shape) != tuple(model_state[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = [f"{source} does not fit the model described by config.json:"]
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            parts.append(f"  {len(items)} {label}: {', '.join(items[:8])}{more}")
    parts.append("Check that config.json belongs to these weights (same layer count and sizes).")
    raise CheckpointMismatchError("\n".join(parts))


def read_state_dict(path: Path) -> tuple[dict[str, Any], list[str], str]:
    """Read and normalise the model weights of a ``.pth``/``.pt``/``.safetensors`` file.

    Returns:
        ``(state_dict, notes, format)``.
    """
    raw, fmt = read_raw_checkpoint(path)
    state_dict, notes = extract_state_dict(raw, path)
    state_dict, more = normalise_keys(state_dict)
    return state_dict, notes + more, fmt


@dataclass(frozen=True)
class CheckpointInfo:
    """One entry of the checkpoint listing.

    Attributes:
        path: path relative to the storage root.
        kind: ``model`` (weights of a model directory), ``lora_adapter`` (a peft directory),
            ``training_checkpoint`` (under ``runs/``) or ``auxiliary`` (dvae, mel stats, speakers).
        owner: the model id or run name the entry belongs to.
        bytes: size (0 when broken).
        mtime: modification time, seconds since the epoch (0 when broken).
        broken: True when the entry cannot be used.
        reason: why it is broken, with the fix; empty otherwise.
    """

    path: str
    kind: str
    owner: str
    bytes: int
    mtime: float
    broken: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def _inspect(path: Path, root: Path, kind: str, owner: str, allowed: list[Path]) -> CheckpointInfo:
    rel = path.relative_to(root).as_posix()
    try:
        check_link(path, allowed)
        if kind == "lora_adapter":
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                check_link(path / name, allowed)
                if not (path / name).is_file():
                    raise CorruptCheckpointError(f"{path} lacks {name}; re-export the adapter")
            sniff_weights_file(path / ADAPTER_WEIGHTS)
            stat = (path / ADAPTER_WEIGHTS).stat()
        else:
            sniff_weights_file(path)
            stat = path.stat()
    except (DanglingSymlinkError, CorruptCheckpointError) as exc:
        return CheckpointInfo(rel, kind, owner, 0, 0.0, True, str(exc))
    return CheckpointInfo(rel, kind, owner, stat.st_size, stat.st_mtime, False, "")


def list_checkpoints(
    storage_root: Path, allowed_mounts: tuple[Path, ...] = (), *, run: str | None = None
) -> list[CheckpointInfo]:
    """List every checkpoint, model weights file and LoRA adapter under the storage root.

    Looks in ``models/`` and ``runs/`` for ``.pt``, ``.pth`` and ``.safetensors`` files (symlinks
    included) and peft adapter directories, flagging broken ones with the reason.

    Args:
        storage_root: the storage root.
        allowed_mounts: extra directories symlinks may point into.
        run: list only ``runs/<run>`` (the entries of that training run).

    Returns:
        Entries sorted by path.

    Raises:
        InvalidInputError: ``run`` is not a safe name.
    """
    allowed = [storage_root, *allowed_mounts]
    found: list[CheckpointInfo] = []
    if run is None:
        found += _walk(storage_root, "models", storage_root / "models", "model", allowed)
    runs = storage_root / "runs"
    start = runs if run is None else runs / validate_component(run, "run name")
    found += _walk(storage_root, "runs", start, "training_checkpoint", allowed)
    return sorted(found, key=lambda info: info.path)


def _walk(storage_root: Path, area: str, start: Path, default_kind: str, allowed: list[Path]) -> list[CheckpointInfo]:
    """The entries under ``start``, a directory in (or equal to) ``storage_root/area``."""
    base = storage_root / area
    found: list[CheckpointInfo] = []
    if not start.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(start):
        here = Path(dirpath)
        # Hidden directories are work in progress (an export before its rename), not checkpoints.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        owner = here.relative_to(base).parts[0] if here != base else ""
        if ADAPTER_CONFIG in filenames:
            found.append(_inspect(here, storage_root, "lora_adapter", owner, allowed))
            dirnames.clear()
            continue
        for name in sorted(filenames):
            if not name.endswith(WEIGHT_SUFFIXES) or name.startswith("."):
                continue
            kind = "auxiliary" if name in AUXILIARY_FILES else default_kind
            found.append(_inspect(here / name, storage_root, kind, owner or name, allowed))
    return found


def training_checkpoints(storage_root: Path, run: str, allowed_mounts: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """A run's training checkpoints, oldest first: :func:`list_checkpoints` of ``runs/<run>`` by directory.

    One row per ``checkpoint_*`` directory with a readable training record (``avs_checkpoint.json``):
    the record (step, epoch, losses, method, base model) plus ``name`` and ``path``.

    Raises:
        InvalidInputError: ``run`` is not a safe name.
    """
    run_dir = storage_root / "runs" / run
    rows: dict[str, dict[str, Any]] = {}
    for entry in list_checkpoints(storage_root, allowed_mounts, run=run):
        parts = PurePosixPath(entry.path).parts  # runs, <run>, <checkpoint dir>, ...
        if len(parts) < 3 or not parts[2].startswith(TRAINING_CHECKPOINT_PREFIX) or parts[2] in rows:
            continue
        directory = run_dir / parts[2]
        try:
            record = json.loads((directory / TRAINING_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rows[parts[2]] = {**record, "name": parts[2], "path": str(directory)}
    return sorted(rows.values(), key=lambda row: row.get("step", 0))
