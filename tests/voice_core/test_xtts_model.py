"""Tests for voice_core.xtts_model on the tiny model: validation, weight formats, prefixes, synthesis."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from voice_core.errors import (
    CheckpointMismatchError,
    ConfigError,
    CorruptCheckpointError,
    DanglingSymlinkError,
    ModelFilesMissingError,
)
from voice_core.storage import Storage
from voice_core.tiny import TINY_SPEAKERS, TinyModelSpec, make_tiny_model
from voice_core.xtts_model import (
    RELEASE_DECODER_WIDTH,
    decoder_width,
    fold_weight_norm,
    load_xtts,
    resolve_device,
    validate_model_dir,
)

TEXT = "Hello there, this is a test."
TRAINER_ONLY_NOTE = (
    "dropped 3 trainer-only keys (dvae, torch_mel_spectrogram_dvae, torch_mel_spectrogram_style_encoder)"
)


@pytest.fixture(scope="module")
def tiny_state(tiny_model_dir: Path) -> dict[str, torch.Tensor]:
    """The tiny model's weights as written to model.pth."""
    return torch.load(tiny_model_dir / "model.pth", map_location="cpu", weights_only=True)["model"]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path) -> tuple[Any, Any]:
    """The tiny model loaded once through load_xtts."""
    return load_xtts(tiny_model_dir, model_id="tiny-test", device="cpu")


def _assert_same_weights(model: Any, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    different = [key for key, value in expected.items() if not torch.equal(state[key], value)]
    assert different == []


def _missing_lines(message: str) -> list[str]:
    return [line.removeprefix("  - ") for line in message.splitlines() if line.startswith("  - ")]


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share storage or are not contiguous.
    return {key: value.clone().contiguous() for key, value in state.items()}


# --- validation before torch ----------------------------------------------------------------------


def test_missing_files_are_listed_with_expected_paths(model_copy: Path) -> None:
    (model_copy / "vocab.json").unlink()
    (model_copy / "model.pth").unlink()

    with pytest.raises(ModelFilesMissingError) as info:
        load_xtts(model_copy, device="cpu")

    message = str(info.value)
    lines = _missing_lines(message)
    assert len(lines) == 2
    assert lines[0].startswith("vocab.json") and str(model_copy / "vocab.json") in lines[0]
    assert "model.pth" in lines[1] and str(model_copy / "model.pth") in lines[1]
    assert str(model_copy / "model.safetensors") in lines[1] and str(model_copy / "model.pt") in lines[1]
    assert "config.json" not in message
    assert isinstance(info.value, FileNotFoundError)


def test_training_purpose_also_requires_dvae_and_mel_stats(model_copy: Path) -> None:
    with pytest.raises(ModelFilesMissingError) as info:
        validate_model_dir(model_copy, purpose="training")

    assert _missing_lines(str(info.value)) == [f"dvae.pth (expected at {model_copy / 'dvae.pth'})"]
    files = validate_model_dir(model_copy)
    assert files.weights == model_copy / "model.pth" and files.dvae is None
    assert files.speakers == model_copy / "speakers_xtts.pth"
    assert files.mel_stats == model_copy / "mel_stats.pth"


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesMissingError, match="does not exist"):
        validate_model_dir(tmp_path / "no-such-model")


def test_dangling_weights_link_names_link_target_and_fix(model_copy: Path) -> None:
    link = model_copy / "model.pth"
    link.unlink()
    link.symlink_to("/nonexistent/cache/model_last.pth")

    with pytest.raises(DanglingSymlinkError) as info:
        load_xtts(model_copy, device="cpu")

    message = str(info.value)
    assert str(link) in message
    assert "/nonexistent/cache/model_last.pth" in message
    assert "does not exist" in message
    assert "Mount the directory holding the target" in message and "replace the link" in message


def test_dangling_model_directory_link(storage: Storage) -> None:
    (storage.models / "gone").symlink_to("/nonexistent/models/gone")

    with pytest.raises(DanglingSymlinkError, match="/nonexistent/models/gone"):
        validate_model_dir(storage.models / "gone")


def _linked_model(storage: Storage, source: Path, weights_target: Path) -> Path:
    directory = storage.models / "linked"
    directory.mkdir()
    for name in ("config.json", "vocab.json", "speakers_xtts.pth"):
        shutil.copyfile(source / name, directory / name)
    (directory / "model.pth").symlink_to(weights_target)
    return directory


def test_link_outside_allowed_roots_is_refused(storage: Storage, tiny_model_dir: Path) -> None:
    directory = _linked_model(storage, tiny_model_dir, tiny_model_dir / "model.pth")

    with pytest.raises(DanglingSymlinkError) as info:
        load_xtts(directory, device="cpu", allowed_roots=[storage.root])

    message = str(info.value)
    assert str(directory / "model.pth") in message
    assert str((tiny_model_dir / "model.pth").resolve()) in message
    assert "outside the storage root" in message


def test_link_within_allowed_roots_loads(
    storage: Storage, tiny_model_dir: Path, tiny_state: dict[str, torch.Tensor]
) -> None:
    blob = storage.root / "cache" / "model_last.pth"
    blob.parent.mkdir()
    shutil.copyfile(tiny_model_dir / "model.pth", blob)
    directory = _linked_model(storage, tiny_model_dir, blob)

    model, report = load_xtts(directory, device="cpu", allowed_roots=[storage.root])

    _assert_same_weights(model, tiny_state)
    assert report.model_id == "linked"
    assert report.files["model.pth"] == blob.stat().st_size


def _truncate_weights(directory: Path) -> Path:
    path = directory / "model.pth"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _text_as_weights(directory: Path) -> Path:
    path = directory / "model.pth"
    shutil.copyfile(directory / "config.json", path)
    return path


def _empty_weights(directory: Path) -> Path:
    path = directory / "model.pth"
    path.write_bytes(b"")
    return path


def _truncated_safetensors(directory: Path) -> Path:
    (directory / "model.pth").unlink()
    path = directory / "model.safetensors"
    save_file({"gpt.text_embedding.weight": torch.randn(300, 64), "mel_stats": torch.rand(80)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_truncate_weights, "truncated"),
        (_text_as_weights, "not a PyTorch checkpoint or safetensors file"),
        (_empty_weights, "is empty"),
        (_truncated_safetensors, "truncated safetensors file"),
    ],
    ids=["truncated-pth", "text-file", "empty", "truncated-safetensors"],
)
def test_corrupt_weights_give_one_paragraph(damage: Callable[[Path], Path], expected: str, model_copy: Path) -> None:
    path = damage(model_copy)

    with pytest.raises(CorruptCheckpointError) as info:
        load_xtts(model_copy, device="cpu")

    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert "Traceback" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [('{"model": "xtts", "model_args": {', "is not valid JSON"), ('{"model": "vits"}', "is not an XTTS config")],
    ids=["invalid-json", "not-xtts"],
)
def test_bad_config_is_corrupt(content: str, expected: str, model_copy: Path) -> None:
    (model_copy / "config.json").write_text(content)

    with pytest.raises(CorruptCheckpointError) as info:
        load_xtts(model_copy, device="cpu")

    assert str(model_copy / "config.json") in str(info.value)
    assert expected in str(info.value)
    assert "Traceback" not in str(info.value)


def test_config_that_does_not_fit_the_weights(model_copy: Path) -> None:
    config = json.loads((model_copy / "config.json").read_text())
    assert config["model_args"]["gpt_layers"] == 2
    config["model_args"]["gpt_layers"] = 3
    (model_copy / "config.json").write_text(json.dumps(config))

    with pytest.raises(CheckpointMismatchError) as info:
        load_xtts(model_copy, device="cpu")

    message = str(info.value)
    assert str(model_copy / "model.pth") in message
    assert "missing keys: gpt.gpt.h.2." in message
    assert "unexpected keys" not in message
    assert "Check that config.json belongs to these weights" in message


def test_resolve_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="AVS_DEVICE=cuda"):
            resolve_device("cuda")


# --- what load_xtts loads -------------------------------------------------------------------------


def test_load_report(loaded: tuple[Any, Any], tiny_model_dir: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    model, report = loaded

    assert report.model_id == "tiny-test"
    assert report.path == str(tiny_model_dir)
    expected_files = {p.name: p.stat().st_size for p in tiny_model_dir.iterdir()}
    assert report.files == expected_files
    assert {"config.json", "model.pth", "vocab.json", "speakers_xtts.pth", "dvae.pth"} <= set(report.files)
    assert (report.device, report.dtype, report.sample_rate) == ("cpu", "float32", 24000)
    assert {"en", "pt"} <= set(report.languages)
    assert sorted(report.speakers) == sorted(TINY_SPEAKERS)
    assert report.load_seconds > 0
    assert report.weights_format == "torch-zip"
    assert report.normalisations == []
    assert report.untrained is True
    assert json.loads(json.dumps(report.to_dict()))["files"] == expected_files
    assert not model.training
    _assert_same_weights(model, tiny_state)


def test_full_release_layout_validates_for_training(tiny_model_dir: Path) -> None:
    files = validate_model_dir(tiny_model_dir, purpose="training")
    assert files.dvae == tiny_model_dir / "dvae.pth" and files.mel_stats == tiny_model_dir / "mel_stats.pth"


def _write_pt(directory: Path, state: dict[str, torch.Tensor]) -> None:
    (directory / "model.pth").unlink()
    torch.save({"model": state}, directory / "model.pt")


def _write_safetensors_beside_other_pth(directory: Path, state: dict[str, torch.Tensor]) -> None:
    # model.safetensors takes precedence over model.pth; the .pth holds other weights to prove it.
    save_file(_contiguous(state), str(directory / "model.safetensors"))
    torch.save({"model": {key: value + 1 for key, value in state.items()}}, directory / "model.pth")


@pytest.mark.parametrize(
    ("write", "fmt"),
    [(_write_pt, "torch-zip"), (_write_safetensors_beside_other_pth, "safetensors")],
    ids=["pt", "safetensors"],
)
def test_weight_formats_load(
    write: Callable[[Path, dict[str, torch.Tensor]], None],
    fmt: str,
    model_copy: Path,
    tiny_state: dict[str, torch.Tensor],
    caplog: pytest.LogCaptureFixture,
) -> None:
    write(model_copy, tiny_state)

    with caplog.at_level(logging.WARNING, logger="voice_core.xtts_model"):
        model, report = load_xtts(model_copy, device="cpu")

    assert report.weights_format == fmt
    assert report.model_id == "model-copy"
    assert report.normalisations == []
    _assert_same_weights(model, tiny_state)
    assert "model-copy has random weights" in caplog.text
    if fmt == "safetensors":
        assert "both model.safetensors and model.pth exist; using model.safetensors" in caplog.text


def _trainer_checkpoint(state: dict[str, torch.Tensor]) -> tuple[str, Any]:
    weights = {f"xtts.{key}": value for key, value in state.items()}
    weights["xtts.dvae.codebook.embed"] = torch.randn(1024, 8)
    weights["xtts.torch_mel_spectrogram_dvae.mel_basis"] = torch.randn(80, 513)
    weights["xtts.torch_mel_spectrogram_style_encoder.mel_basis"] = torch.randn(80, 513)
    optimizer = {
        "state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(16), "exp_avg_sq": torch.zeros(16)}},
        "param_groups": [{"lr": 5e-6, "betas": (0.9, 0.96), "params": [0]}],
    }
    checkpoint = {"model": weights, "optimizer": optimizer, "scaler": {"scale": 65536.0}, "step": 10, "epoch": 1}
    return "model.pth", checkpoint


def _ddp_checkpoint(state: dict[str, torch.Tensor]) -> tuple[str, Any]:
    return "model.pt", {f"module.{key}": value for key, value in state.items()}


def _plain_and_ema_checkpoint(state: dict[str, torch.Tensor]) -> tuple[str, Any]:
    # The plain copy is shifted by one, so equal weights after loading prove the EMA copy won.
    plain = {f"model.{key}": value + 1 for key, value in state.items()}
    return "model.pth", {**plain, **{f"ema.{key}": value for key, value in state.items()}}


def _nested_wrapper_checkpoint(state: dict[str, torch.Tensor]) -> tuple[str, Any]:
    return "model.pth", {"state_dict": {f"module.xtts.{key}": value for key, value in state.items()}, "epoch": 3}


def _ema_only_safetensors(state: dict[str, torch.Tensor]) -> tuple[str, Any]:
    return "model.safetensors", {f"ema_model.{key}": value for key, value in _contiguous(state).items()}


@pytest.mark.parametrize(
    ("build", "notes"),
    [
        (_trainer_checkpoint, ["stripped prefix 'xtts.' from {n_plus_3} keys", TRAINER_ONLY_NOTE]),
        (_ddp_checkpoint, ["stripped prefix 'module.' from {n} keys"]),
        (
            _plain_and_ema_checkpoint,
            [
                "stripped prefix 'ema.' from {n} keys",
                "stripped prefix 'model.' from {n} keys",
                "EMA weights used: {n} plain duplicates replaced by their EMA copies",
            ],
        ),
        (
            _nested_wrapper_checkpoint,
            ["weights taken from the checkpoint's 'state_dict' entry", "stripped prefix 'module.xtts.' from {n} keys"],
        ),
        (_ema_only_safetensors, ["stripped prefix 'ema_model.' from {n} keys"]),
    ],
    ids=["coqui-trainer", "ddp", "plain-and-ema", "module-xtts", "ema-model-safetensors"],
)
def test_key_prefixes_are_normalised_and_reported(
    build: Callable[[dict[str, torch.Tensor]], tuple[str, Any]],
    notes: list[str],
    model_copy: Path,
    tiny_state: dict[str, torch.Tensor],
) -> None:
    name, checkpoint = build(tiny_state)
    (model_copy / "model.pth").unlink()
    if name.endswith(".safetensors"):
        save_file(checkpoint, str(model_copy / name))
    else:
        torch.save(checkpoint, model_copy / name)

    model, report = load_xtts(model_copy, device="cpu")

    n = len(tiny_state)
    assert report.normalisations == [note.format(n=n, n_plus_3=n + 3) for note in notes]
    _assert_same_weights(model, tiny_state)
    assert not any(key.startswith(("xtts.", "module.", "dvae.")) for key in model.state_dict())


# --- synthesis: coqui's own loader and ours give the same audio -----------------------------------


def _finite_audio(wav: Any) -> np.ndarray:
    samples = np.asarray(wav.detach().cpu() if isinstance(wav, torch.Tensor) else wav, dtype=np.float32).ravel()
    assert samples.size > 0
    assert np.isfinite(samples).all()
    return samples


@pytest.fixture(scope="module")
def release_width_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with the release's HiFiGAN width (512), which coqui's own loader can build."""
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-512", TinyModelSpec(decoder_width=512))


@pytest.fixture(scope="module")
def coqui_run(release_width_model_dir: Path, speech_wav: Path) -> dict[str, Any]:
    """Load the tiny model with coqui's own Xtts.load_checkpoint, clone the espeak voice, synthesise."""
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    tiny_model_dir = release_width_model_dir
    config = XttsConfig()
    config.load_json(str(tiny_model_dir / "config.json"))
    model = Xtts(config)
    model.load_checkpoint(config, checkpoint_dir=str(tiny_model_dir), eval=True)
    latent, embedding = model.get_conditioning_latents(audio_path=[str(speech_wav)])
    torch.manual_seed(1234)
    whole = model.inference(TEXT, "en", latent, embedding)
    torch.manual_seed(1234)
    chunks = list(model.inference_stream(TEXT, "en", latent, embedding, stream_chunk_size=20))
    return {"model": model, "latent": latent, "embedding": embedding, "wav": whole["wav"], "chunks": chunks}


def test_coqui_loads_the_tiny_model_and_synthesises(coqui_run: dict[str, Any]) -> None:
    model = coqui_run["model"]
    assert sorted(model.speaker_manager.speaker_names) == sorted(TINY_SPEAKERS)
    assert tuple(coqui_run["latent"].shape) == (1, 32, 64)
    assert tuple(coqui_run["embedding"].shape) == (1, 512, 1)
    assert torch.isfinite(coqui_run["latent"]).all() and torch.isfinite(coqui_run["embedding"]).all()
    wav = _finite_audio(coqui_run["wav"])
    assert wav.size >= 1024
    assert np.abs(wav).max() > 0


def test_coqui_streams_several_chunks(coqui_run: dict[str, Any]) -> None:
    chunks = [_finite_audio(chunk) for chunk in coqui_run["chunks"]]
    assert len(chunks) > 1
    assert sum(chunk.size for chunk in chunks) >= 1024


@pytest.fixture(scope="module")
def loaded_release_width(release_width_model_dir: Path) -> tuple[Any, Any]:
    """The release-width tiny model loaded through load_xtts."""
    return load_xtts(release_width_model_dir, device="cpu")


def test_load_xtts_gives_coqui_identical_latents_and_audio(
    loaded_release_width: tuple[Any, Any], coqui_run: dict[str, Any], speech_wav: Path
) -> None:
    model, _report = loaded_release_width

    latent, embedding = model.get_conditioning_latents(audio_path=[str(speech_wav)])
    assert torch.equal(latent, coqui_run["latent"])
    assert torch.equal(embedding, coqui_run["embedding"])
    torch.manual_seed(1234)
    wav = _finite_audio(model.inference(TEXT, "en", latent, embedding)["wav"])
    np.testing.assert_array_equal(wav, _finite_audio(coqui_run["wav"]))


def test_load_xtts_model_streams(loaded_release_width: tuple[Any, Any], coqui_run: dict[str, Any]) -> None:
    model, _report = loaded_release_width
    torch.manual_seed(1234)
    chunks = list(model.inference_stream(TEXT, "en", coqui_run["latent"], coqui_run["embedding"], stream_chunk_size=20))

    assert len(chunks) == len(coqui_run["chunks"]) > 1
    for ours, theirs in zip(chunks, coqui_run["chunks"], strict=True):
        np.testing.assert_array_equal(_finite_audio(ours), _finite_audio(theirs))


def test_decoder_width_is_taken_from_the_weights(
    loaded: tuple[Any, Any], loaded_release_width: tuple[Any, Any], tiny_state: dict[str, torch.Tensor]
) -> None:
    # The default tiny model has a narrow HiFiGAN; the loader builds whichever width the weights hold.
    narrow, _ = loaded
    release, _ = loaded_release_width
    assert decoder_width(tiny_state) == TinyModelSpec().decoder_width == 32
    assert narrow.hifigan_decoder.waveform_decoder.conv_pre.out_channels == 32
    assert release.hifigan_decoder.waveform_decoder.conv_pre.out_channels == RELEASE_DECODER_WIDTH == 512
    _assert_same_weights(narrow, tiny_state)
    # Same sample count per token at either width: only the channel counts differ.
    latents = torch.randn(1, 10, 64)
    speaker = torch.nn.functional.normalize(torch.randn(1, 512, 1), dim=1)
    with torch.inference_mode():
        assert narrow.hifigan_decoder(latents, g=speaker).shape == release.hifigan_decoder(latents, g=speaker).shape


def test_folding_hifigans_weight_norm_keeps_its_audio_bit_for_bit(tiny_model_dir: Path) -> None:
    model, _ = load_xtts(tiny_model_dir, device="cpu")
    decoder = model.hifigan_decoder
    latents = torch.randn(1, 12, 64)
    speaker = torch.nn.functional.normalize(torch.randn(1, 512, 1), dim=1)
    with torch.inference_mode():
        before = decoder(latents, g=speaker)
    assert any(".parametrizations.weight." in key for key in decoder.state_dict())

    assert fold_weight_norm(decoder) > 10
    assert not any("parametrizations" in key for key in decoder.state_dict())
    with torch.inference_mode():
        assert torch.equal(decoder(latents, g=speaker), before)
    assert fold_weight_norm(decoder) == 0  # a second engine on the same model finds nothing left to fold


def test_coquis_own_loader_cannot_build_the_narrow_decoder(tiny_model_dir: Path) -> None:
    # Why load_xtts rebuilds the decoder: coqui's Xtts always builds width 512.
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    config = XttsConfig()
    config.load_json(str(tiny_model_dir / "config.json"))
    with pytest.raises(RuntimeError, match=r"conv_pre\.weight"):
        Xtts(config).load_checkpoint(config, checkpoint_dir=str(tiny_model_dir), eval=True)


def test_make_tiny_model_refuses_a_decoder_width_hifigan_cannot_halve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from voice_core.__main__ import main

    target = tmp_path / "odd-width"
    assert main(["make-tiny-model", str(target), "--decoder-width", "24"]) == 2
    assert "decoder width 24 is not a multiple of 16" in capsys.readouterr().err
    assert not target.exists()
