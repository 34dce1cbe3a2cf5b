"""Resolve a model id to a directory, validate it before torch sees it, and load it with coqui.

``load_xtts`` returns the coqui ``Xtts`` model and a :class:`LoadReport`. Loading goes through
coqui's own ``Xtts.load_checkpoint``; only the reading of the weights file is ours, so that
``.pth``, ``.pt`` and ``.safetensors`` are accepted, wrapper prefixes are normalised and reported,
and the user's file is never rewritten.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voice_core.checkpoints import check_link, check_state_dict, read_state_dict, sniff_weights_file
from voice_core.errors import (
    ConfigError,
    CorruptCheckpointError,
    DanglingSymlinkError,
    ModelFilesMissingError,
)
from voice_core.manifest import read_manifest

log = logging.getLogger(__name__)

WEIGHT_NAMES: tuple[str, ...] = ("model.safetensors", "model.pth", "model.pt")
INFERENCE_FILES: tuple[str, ...] = ("config.json", "vocab.json")
TRAINING_FILES: tuple[str, ...] = ("dvae.pth", "mel_stats.pth")
SPEAKERS_FILE = "speakers_xtts.pth"
# The HiFiGAN's first convolution: its output channels are the decoder's width (the release's is 512).
DECODER_WIDTH_KEY = "hifigan_decoder.waveform_decoder.conv_pre.weight"
RELEASE_DECODER_WIDTH = 512


@dataclass(frozen=True)
class ModelFiles:
    """The validated files of a model directory."""

    directory: Path
    config: Path
    weights: Path
    vocab: Path
    speakers: Path | None
    dvae: Path | None
    mel_stats: Path | None


@dataclass
class LoadReport:
    """What :func:`load_xtts` loaded, for logs, ``/health/engines`` and ``GET /models``."""

    model_id: str
    path: str
    files: dict[str, int]
    device: str
    dtype: str
    sample_rate: int
    languages: list[str]
    speakers: list[str]
    load_seconds: float
    weights_format: str
    normalisations: list[str] = field(default_factory=list)
    untrained: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def validate_model_dir(
    directory: Path, *, purpose: str = "inference", allowed_roots: list[Path] | None = None
) -> ModelFiles:
    """Check a model directory's files exist, are not dangling links and look like what they claim.

    Args:
        directory: the model directory.
        purpose: ``"inference"`` (config, weights, vocab) or ``"training"`` (also dvae and mel stats).
        allowed_roots: directories symlinks may resolve into; None allows anywhere.

    Returns:
        The resolved file set.

    Raises:
        ModelFilesMissingError: listing every missing file and where it was expected.
        DanglingSymlinkError: naming each dangling link and its target.
        CorruptCheckpointError: a file is empty, truncated or of the wrong kind.
    """
    if not directory.is_dir():
        check_link(directory, allowed_roots)
        raise ModelFilesMissingError(f"model directory {directory} does not exist")
    required = list(INFERENCE_FILES) + (list(TRAINING_FILES) if purpose == "training" else [])
    link_errors: list[str] = []
    for name in [*required, *WEIGHT_NAMES, SPEAKERS_FILE]:
        try:
            check_link(directory / name, allowed_roots)
        except DanglingSymlinkError as exc:
            link_errors.append(str(exc))
    if link_errors:
        raise DanglingSymlinkError("\n".join(link_errors))
    missing = [name for name in required if not (directory / name).is_file()]
    weights = next((directory / n for n in WEIGHT_NAMES if (directory / n).is_file()), None)
    if weights is None:
        missing.append(" or ".join(WEIGHT_NAMES))
    if missing:
        lines = "\n".join(
            f"  - {name} (expected at {' or '.join(str(directory / n) for n in name.split(' or '))})"
            for name in missing
        )
        raise ModelFilesMissingError(f"model directory {directory} is incomplete; missing:\n{lines}")
    assert weights is not None
    for extra in WEIGHT_NAMES:
        if (directory / extra).is_file() and directory / extra != weights:
            log.warning("%s: both %s and %s exist; using %s", directory, weights.name, extra, weights.name)
    _check_config(directory / "config.json")
    sniff_weights_file(weights)
    optional = {name: directory / name for name in (SPEAKERS_FILE, *TRAINING_FILES)}
    for path in optional.values():
        if path.is_file():
            sniff_weights_file(path)
    return ModelFiles(
        directory=directory,
        config=directory / "config.json",
        weights=weights,
        vocab=directory / "vocab.json",
        speakers=optional[SPEAKERS_FILE] if optional[SPEAKERS_FILE].is_file() else None,
        dvae=optional["dvae.pth"] if optional["dvae.pth"].is_file() else None,
        mel_stats=optional["mel_stats.pth"] if optional["mel_stats.pth"].is_file() else None,
    )


def _check_config(path: Path) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CorruptCheckpointError(f"{path} is not valid JSON ({exc}); restore it from the release") from None
    if not isinstance(data, dict) or data.get("model") != "xtts":
        raise CorruptCheckpointError(f'{path} is not an XTTS config (its "model" is not "xtts")')


def decoder_width(state_dict: dict[str, Any]) -> int:
    """Return the HiFiGAN width a checkpoint was trained with (512 when the checkpoint has no decoder)."""
    weight = state_dict.get(DECODER_WIDTH_KEY)
    return RELEASE_DECODER_WIDTH if weight is None else int(weight.shape[0])


def set_decoder_width(model: Any, width: int) -> None:
    """Rebuild ``model.hifigan_decoder`` with ``width`` initial upsampling channels, if it differs.

    Coqui's ``Xtts.init_models`` always builds the release width (512); ``HifiDecoder`` itself takes
    the width as an argument. The tiny model uses a narrow decoder, and every loader calls this with
    :func:`decoder_width` of the weights it is about to load, so both widths load through one path.
    The new decoder has fresh (random) weights; the caller loads the checkpoint into it.
    """
    from TTS.tts.layers.xtts.hifigan_decoder import HifiDecoder

    if model.hifigan_decoder.waveform_decoder.conv_pre.out_channels == width:
        return
    args = model.args
    model.hifigan_decoder = HifiDecoder(
        input_sample_rate=args.input_sample_rate,
        output_sample_rate=args.output_sample_rate,
        output_hop_length=args.output_hop_length,
        ar_mel_length_compression=args.gpt_code_stride_len,
        decoder_input_dim=args.decoder_input_dim,
        d_vector_dim=args.d_vector_dim,
        cond_d_vector_in_each_upsampling_layer=args.cond_d_vector_in_each_upsampling_layer,
        upsample_initial_channel_decoder=width,
    )


def fold_weight_norm(module: Any) -> int:
    """Fold weight normalisation into plain weights, for inference only; returns how many were folded.

    Coqui's HiFiGAN keeps ``weight_norm`` parametrizations after ``Xtts.load_checkpoint``, so every
    forward recomputes each convolution's weight from its direction and magnitude. Folding computes
    them once (the same arithmetic, so the outputs are bit for bit the same, as coqui's own vocoder
    loader does in eval mode). The folded module no longer has the training layout of its state dict:
    only engines that serve call this, never on a model that is saved or trained.
    """
    from torch.nn.utils import parametrize

    folded = 0
    for child in module.modules():
        if parametrize.is_parametrized(child, "weight"):
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
            folded += 1
    return folded


def resolve_device(requested: str = "auto") -> str:
    """Map ``auto``/``cpu``/``cuda`` to the device to use, failing clearly if CUDA is absent."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("AVS_DEVICE=cuda but this process sees no CUDA device; use auto or cpu")
    return requested


def load_xtts(
    directory: Path,
    *,
    model_id: str | None = None,
    device: str = "auto",
    allowed_roots: list[Path] | None = None,
) -> tuple[Any, LoadReport]:
    """Validate and load an XTTS model directory with coqui's ``Xtts.load_checkpoint``.

    Args:
        directory: the model directory (release layout).
        model_id: id shown in the report; defaults to the directory name.
        device: ``auto``, ``cpu`` or ``cuda``.
        allowed_roots: directories symlinks may resolve into; None allows anywhere.

    Returns:
        ``(model, report)``; the model is in eval mode on the chosen device.
    """
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    started = time.perf_counter()
    files = validate_model_dir(directory, allowed_roots=allowed_roots)
    target_device = resolve_device(device)
    state_dict, notes, fmt = read_state_dict(files.weights)

    config = XttsConfig()
    config.load_json(str(files.config))
    model = Xtts(config)

    def compatible_state_dict(_path: Path) -> dict[str, Any]:
        # Called by load_checkpoint after init_models(), so the model's own keys are known here.
        set_decoder_width(model, decoder_width(state_dict))
        check_state_dict(state_dict, model.state_dict(), files.weights)
        return state_dict

    model.get_compatible_checkpoint_state_dict = compatible_state_dict
    model.load_checkpoint(
        config,
        checkpoint_dir=str(directory),
        checkpoint_path=str(files.weights),
        vocab_path=str(files.vocab),
        speaker_file_path=str(files.speakers) if files.speakers else None,
        eval=True,
        strict=True,
    )
    del model.get_compatible_checkpoint_state_dict
    model.to(target_device).eval()
    manifest = read_manifest(directory) or {}
    report = LoadReport(
        model_id=model_id or directory.name,
        path=str(directory),
        files={p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file()},
        device=target_device,
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
        sample_rate=int(config.model_args.output_sample_rate),
        languages=list(config.languages),
        speakers=list(model.speaker_manager.speaker_names) if model.speaker_manager else [],
        load_seconds=round(time.perf_counter() - started, 3),
        weights_format=fmt,
        normalisations=notes,
        untrained=bool(manifest.get("untrained", False)),
    )
    for note in notes:
        log.info("loading %s: %s", report.model_id, note)
    if report.untrained:
        log.warning("model %s has random weights (tiny test model): it produces noise", report.model_id)
    log.info("loaded %s from %s on %s in %.2fs", report.model_id, directory, target_device, report.load_seconds)
    return model, report
