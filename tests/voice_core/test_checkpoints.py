"""Tests for voice_core.checkpoints: sniffing, safe reading, key normalisation and the one listing."""

from __future__ import annotations

import argparse
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from voice_core.checkpoints import (
    CheckpointInfo,
    check_link,
    extract_state_dict,
    list_checkpoints,
    normalise_keys,
    read_raw_checkpoint,
    read_state_dict,
    sniff_weights_file,
)
from voice_core.errors import CorruptCheckpointError, DanglingSymlinkError
from voice_core.storage import Storage

TRAINER_ONLY_NOTE = (
    "dropped {n} trainer-only keys (dvae, torch_mel_spectrogram_dvae, torch_mel_spectrogram_style_encoder)"
)


def _tensor(value: float, size: int = 4) -> torch.Tensor:
    return torch.full((size,), float(value))


def _small_state() -> dict[str, torch.Tensor]:
    return {
        "gpt.conditioning_encoder.init.weight": torch.arange(64, dtype=torch.float32).reshape(8, 8),
        "gpt.text_embedding.weight": torch.linspace(-1, 1, 4096).reshape(64, 64),
        "hifigan_decoder.waveform_decoder.conv_pre.bias": torch.ones(16),
    }


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# --- normalise_keys -------------------------------------------------------------------------------


def test_normalise_keys_leaves_plain_state_dict_alone() -> None:
    state = {"gpt.a.weight": _tensor(1), "hifigan_decoder.b.bias": _tensor(2), "mel_stats": _tensor(3)}

    out, notes = normalise_keys(state)

    assert out == state
    assert notes == []


@pytest.mark.parametrize(
    "prefix",
    ["xtts.", "module.", "model.", "_orig_mod.", "module.xtts.", "module._orig_mod.xtts.", "model.xtts."],
)
def test_normalise_keys_strips_wrapper_prefixes(prefix: str) -> None:
    gpt, decoder, stats = _tensor(1), _tensor(2), _tensor(3)
    state = {f"{prefix}gpt.a.weight": gpt, f"{prefix}hifigan_decoder.b.bias": decoder, f"{prefix}mel_stats": stats}

    out, notes = normalise_keys(state)

    assert list(out) == ["gpt.a.weight", "hifigan_decoder.b.bias", "mel_stats"]
    assert out["gpt.a.weight"] is gpt and out["hifigan_decoder.b.bias"] is decoder and out["mel_stats"] is stats
    assert notes == [f"stripped prefix '{prefix}' from 3 keys"]


@pytest.mark.parametrize("prefix", ["ema_model.", "model_ema.", "ema.", "module.ema_model.", "ema.xtts."])
def test_normalise_keys_strips_ema_prefixes_without_plain_copies(prefix: str) -> None:
    state = {f"{prefix}gpt.a.weight": _tensor(1), f"{prefix}hifigan_decoder.b.bias": _tensor(2)}

    out, notes = normalise_keys(state)

    assert sorted(out) == ["gpt.a.weight", "hifigan_decoder.b.bias"]
    assert notes == [f"stripped prefix '{prefix}' from 2 keys"]


@pytest.mark.parametrize(("plain_prefix", "ema_prefix"), [("", "ema."), ("model.", "ema_model."), ("", "model_ema.")])
@pytest.mark.parametrize("ema_first", [False, True])
def test_normalise_keys_ema_copy_wins_over_plain(plain_prefix: str, ema_prefix: str, ema_first: bool) -> None:
    plain_a, plain_b, ema_a = _tensor(0), _tensor(5), _tensor(1)
    plain = {f"{plain_prefix}gpt.a.weight": plain_a, f"{plain_prefix}gpt.b.weight": plain_b}
    ema = {f"{ema_prefix}gpt.a.weight": ema_a}
    state = {**ema, **plain} if ema_first else {**plain, **ema}

    out, notes = normalise_keys(state)

    assert out["gpt.a.weight"] is ema_a
    # A weight without an EMA copy keeps its plain value.
    assert out["gpt.b.weight"] is plain_b
    assert set(out) == {"gpt.a.weight", "gpt.b.weight"}
    assert "EMA weights used: 1 plain duplicates replaced by their EMA copies" in notes
    assert f"stripped prefix '{ema_prefix}' from 1 keys" in notes
    if plain_prefix:
        assert f"stripped prefix '{plain_prefix}' from 2 keys" in notes


def test_normalise_keys_drops_trainer_only_keys_and_counts_each_rule() -> None:
    state = {
        "xtts.gpt.a.weight": _tensor(1),
        "xtts.hifigan_decoder.b.bias": _tensor(2),
        "xtts.dvae.encoder.0.weight": _tensor(3),
        "xtts.torch_mel_spectrogram_dvae.mel_basis": _tensor(4),
        "xtts.torch_mel_spectrogram_style_encoder.mel_basis": _tensor(5),
        "dvae.codebook.embed": _tensor(6),
    }

    out, notes = normalise_keys(state)

    assert sorted(out) == ["gpt.a.weight", "hifigan_decoder.b.bias"]
    assert notes == ["stripped prefix 'xtts.' from 5 keys", TRAINER_ONLY_NOTE.format(n=4)]


def test_normalise_keys_notes_list_each_prefix_chain_separately_and_sorted() -> None:
    state = {
        "module.gpt.a": _tensor(1),
        "module.gpt.b": _tensor(2),
        "xtts.gpt.c": _tensor(3),
        "module.xtts.gpt.d": _tensor(4),
    }

    out, notes = normalise_keys(state)

    assert sorted(out) == ["gpt.a", "gpt.b", "gpt.c", "gpt.d"]
    assert notes == [
        "stripped prefix 'module.' from 2 keys",
        "stripped prefix 'module.xtts.' from 1 keys",
        "stripped prefix 'xtts.' from 1 keys",
    ]


def test_normalise_keys_stops_at_the_models_own_modules() -> None:
    # 'model.' inside a module name is part of the model's key, not a wrapper prefix.
    state = {"xtts.gpt.model.ln.weight": _tensor(1), "hifigan_decoder.model.conv.bias": _tensor(2)}

    out, notes = normalise_keys(state)

    assert sorted(out) == ["gpt.model.ln.weight", "hifigan_decoder.model.conv.bias"]
    assert notes == ["stripped prefix 'xtts.' from 1 keys"]


def test_normalise_keys_keeps_unknown_keys_and_honours_expected_roots() -> None:
    out, notes = normalise_keys({"encoder.layer.weight": _tensor(1)})
    assert list(out) == ["encoder.layer.weight"] and notes == []

    out, notes = normalise_keys({"model.encoder.w": _tensor(1)}, expected_roots=frozenset({"encoder"}))
    assert list(out) == ["encoder.w"]
    assert notes == ["stripped prefix 'model.' from 1 keys"]


# --- extract_state_dict / read_state_dict ---------------------------------------------------------


def test_extract_state_dict_bare_and_containers(tmp_path: Path) -> None:
    state = _small_state()
    source = tmp_path / "x.pth"

    assert extract_state_dict(state, source) == (state, [])
    assert extract_state_dict({"model": state, "optimizer": {"state": {}}, "step": 3}, source) == (state, [])
    found, notes = extract_state_dict({"state_dict": state, "epoch": 2}, source)
    assert found == state
    assert notes == ["weights taken from the checkpoint's 'state_dict' entry"]


def test_extract_state_dict_without_weights_names_the_entries(tmp_path: Path) -> None:
    with pytest.raises(CorruptCheckpointError) as info:
        extract_state_dict({"optimizer": {"state": {}}, "step": 3}, tmp_path / "opt.pth")

    message = str(info.value)
    assert "opt.pth holds no model weights" in message
    assert "optimizer, step" in message


def test_read_state_dict_from_trainer_checkpoint(tmp_path: Path) -> None:
    state = _small_state()
    path = tmp_path / "checkpoint_10.pt"
    torch.save(
        {
            "model": {**{f"xtts.{k}": v for k, v in state.items()}, "xtts.dvae.codebook": torch.zeros(3)},
            "optimizer": {"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 1e-5, "params": [0]}]},
            "step": 10,
        },
        path,
    )

    loaded, notes, fmt = read_state_dict(path)

    assert fmt == "torch-zip"
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert notes == ["stripped prefix 'xtts.' from 4 keys", TRAINER_ONLY_NOTE.format(n=1)]


def test_read_state_dict_from_safetensors(tmp_path: Path) -> None:
    state = _small_state()
    path = tmp_path / "export.safetensors"
    save_file({f"module.{k}": v for k, v in state.items()}, str(path))

    loaded, notes, fmt = read_state_dict(path)

    assert fmt == "safetensors"
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert notes == ["stripped prefix 'module.' from 3 keys"]


# --- sniffing and corrupt files -------------------------------------------------------------------


def test_sniff_recognises_good_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    save_file(_small_state(), str(tmp_path / "w.safetensors"))
    torch.save(_small_state(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)

    assert sniff_weights_file(tiny_model_dir / "model.pth") == "torch-zip"
    assert sniff_weights_file(tiny_model_dir / "speakers_xtts.pth") == "torch-zip"
    assert sniff_weights_file(tmp_path / "w.safetensors") == "safetensors"
    assert sniff_weights_file(tmp_path / "legacy.pth") == "torch-legacy"
    assert read_raw_checkpoint(tmp_path / "legacy.pth")[1] == "torch-legacy"


def _truncated_zip(tmp_path: Path) -> Path:
    torch.save({"model": _small_state()}, tmp_path / "model.pth")
    return _truncate(tmp_path / "model.pth")


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pth"
    path.write_text("this is a README that was renamed to model.pth by mistake\n" * 4)
    return path


def _short_text_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    path.write_text("oops")
    return path


def _empty_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pth"
    path.touch()
    return path


def _truncated_safetensors(tmp_path: Path) -> Path:
    save_file(_small_state(), str(tmp_path / "model.safetensors"))
    return _truncate(tmp_path / "model.safetensors")


def _zip_without_pickle(tmp_path: Path) -> Path:
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a checkpoint")
    return path


def _truncated_legacy(tmp_path: Path) -> Path:
    torch.save({"model": _small_state()}, tmp_path / "model.pth", _use_new_zipfile_serialization=False)
    return _truncate(tmp_path / "model.pth")


def _unsafe_pickle(tmp_path: Path) -> Path:
    # Some trainers pickle their argparse namespace; the safe unpickler refuses it.
    torch.save({"model": _small_state(), "args": argparse.Namespace(lr=1e-5)}, tmp_path / "model.pth")
    return tmp_path / "model.pth"


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "model.pth").mkdir()
    return tmp_path / "model.pth"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_truncated_zip, "truncated"),
        (_text_file, "not a PyTorch checkpoint or safetensors file"),
        (_short_text_file, "not a PyTorch checkpoint or safetensors file"),
        (_empty_file, "is empty (0 bytes)"),
        (_truncated_safetensors, "truncated safetensors file"),
        (_zip_without_pickle, "no data.pkl"),
        (_truncated_legacy, "could not be loaded as a PyTorch checkpoint"),
        (_unsafe_pickle, "could not be loaded as a PyTorch checkpoint"),
        (_directory, "is a directory"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_corrupt_files_raise_one_readable_paragraph(make, expected: str, tmp_path: Path) -> None:
    path = make(tmp_path)

    with pytest.raises(CorruptCheckpointError) as info:
        read_raw_checkpoint(path)

    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert "Traceback" not in message
    assert "\n" not in message
    assert len(message) < 700


# --- check_link -----------------------------------------------------------------------------------


def test_check_link_dangling_names_link_target_and_fix(tmp_path: Path) -> None:
    link = tmp_path / "model.pth"
    link.symlink_to("/nonexistent/cache/model_last.pth")

    with pytest.raises(DanglingSymlinkError) as info:
        check_link(link)

    message = str(info.value)
    assert str(link) in message
    assert "/nonexistent/cache/model_last.pth" in message
    assert "does not exist" in message
    assert "Mount the directory holding the target" in message
    assert isinstance(info.value, FileNotFoundError)


def test_check_link_outside_allowed_roots(tmp_path: Path) -> None:
    root, outside = tmp_path / "storage", tmp_path / "cache"
    root.mkdir()
    outside.mkdir()
    (outside / "model.pth").write_bytes(b"x")
    (root / "inside.pth").write_bytes(b"y")
    link = root / "model.pth"
    link.symlink_to(outside / "model.pth")
    good = root / "good.pth"
    good.symlink_to("inside.pth")

    with pytest.raises(DanglingSymlinkError) as info:
        check_link(link, [root])

    message = str(info.value)
    assert str(link) in message and str(outside / "model.pth") in message
    assert "outside the storage root" in message and "AVS_ALLOWED_MOUNTS" in message
    check_link(link, [root, outside])
    check_link(link, None)
    check_link(good, [root])
    check_link(root / "inside.pth", [outside])  # not a link: nothing to check


# --- list_checkpoints -----------------------------------------------------------------------------


@pytest.fixture
def populated(storage: Storage, tiny_model_dir: Path) -> Storage:
    """A storage root holding a model, a run's checkpoints (two broken) and a LoRA adapter."""
    model = storage.models / "tiny"
    model.mkdir()
    for name in ("config.json", "vocab.json", "model.pth", "speakers_xtts.pth", "mel_stats.pth"):
        shutil.copyfile(tiny_model_dir / name, model / name)
    # The 210 MB DVAE stays where it is: a link into an allowed mount.
    (model / "dvae.pth").symlink_to(tiny_model_dir / "dvae.pth")

    run = storage.runs / "run1"
    run.mkdir()
    state = _small_state()
    torch.save({"model": {f"xtts.{k}": v for k, v in state.items()}, "step": 5}, run / "checkpoint_5.pt")
    torch.save({"model": state}, run / "best_model.pth")
    save_file(state, str(run / "export.safetensors"))
    (run / "model_last.pt").symlink_to("/missing/cache/model_last.pt")
    torch.save({"model": state}, run / "broken.pth")
    _truncate(run / "broken.pth")
    (run / "trainer_0_log.txt").write_text("not a checkpoint")
    (run / "config.json").write_text("{}")

    lora = storage.models / "my-lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    save_file({"base_model.model.gpt.a.lora_A.weight": torch.zeros(4, 8)}, str(lora / "adapter_model.safetensors"))
    return storage


def _by_path(entries: list[CheckpointInfo]) -> dict[str, CheckpointInfo]:
    return {entry.path: entry for entry in entries}


def test_list_checkpoints_finds_every_kind_with_size_and_mtime(populated: Storage, tiny_model_dir: Path) -> None:
    entries = list_checkpoints(populated.root, allowed_mounts=(tiny_model_dir.parent,))
    found = _by_path(entries)

    assert [e.path for e in entries] == sorted(found)
    assert {path: (e.kind, e.owner) for path, e in found.items()} == {
        "models/my-lora": ("lora_adapter", "my-lora"),
        "models/tiny/dvae.pth": ("auxiliary", "tiny"),
        "models/tiny/mel_stats.pth": ("auxiliary", "tiny"),
        "models/tiny/model.pth": ("model", "tiny"),
        "models/tiny/speakers_xtts.pth": ("auxiliary", "tiny"),
        "runs/run1/best_model.pth": ("training_checkpoint", "run1"),
        "runs/run1/broken.pth": ("training_checkpoint", "run1"),
        "runs/run1/checkpoint_5.pt": ("training_checkpoint", "run1"),
        "runs/run1/export.safetensors": ("training_checkpoint", "run1"),
        "runs/run1/model_last.pt": ("training_checkpoint", "run1"),
    }
    broken = {path for path, e in found.items() if e.broken}
    assert broken == {"runs/run1/broken.pth", "runs/run1/model_last.pt"}
    for path, entry in found.items():
        if entry.broken:
            continue
        real = populated.root / path
        if entry.kind == "lora_adapter":
            real = real / "adapter_model.safetensors"
        assert entry.bytes == real.stat().st_size > 0, path
        assert entry.mtime == real.stat().st_mtime, path
        assert entry.reason == ""
    assert found["models/tiny/dvae.pth"].bytes == (tiny_model_dir / "dvae.pth").stat().st_size
    assert found["models/tiny/model.pth"].to_dict()["bytes"] == (tiny_model_dir / "model.pth").stat().st_size


def test_list_checkpoints_explains_broken_entries(populated: Storage, tiny_model_dir: Path) -> None:
    found = _by_path(list_checkpoints(populated.root, allowed_mounts=(tiny_model_dir.parent,)))

    dangling = found["runs/run1/model_last.pt"]
    assert dangling.broken and (dangling.bytes, dangling.mtime) == (0, 0.0)
    assert "/missing/cache/model_last.pt" in dangling.reason
    assert "does not exist" in dangling.reason
    truncated = found["runs/run1/broken.pth"]
    assert truncated.broken and truncated.bytes == 0
    assert "broken.pth" in truncated.reason and "truncated" in truncated.reason


def test_list_checkpoints_flags_links_outside_allowed_mounts(populated: Storage) -> None:
    found = _by_path(list_checkpoints(populated.root))

    dvae = found["models/tiny/dvae.pth"]
    assert dvae.broken
    assert "outside the storage root" in dvae.reason
    assert not found["models/tiny/model.pth"].broken


def test_list_checkpoints_flags_incomplete_adapter(populated: Storage) -> None:
    (populated.models / "my-lora" / "adapter_model.safetensors").unlink()

    adapter = _by_path(list_checkpoints(populated.root))["models/my-lora"]

    assert adapter.broken and adapter.kind == "lora_adapter"
    assert "lacks adapter_model.safetensors" in adapter.reason


def test_list_checkpoints_skips_hidden_work_directories(populated: Storage) -> None:
    # An export in progress writes into a hidden sibling directory before renaming it into place.
    work = populated.models / ".finetuned.abc123"
    work.mkdir()
    torch.save({"model": _small_state()}, work / "model.pth")
    (populated.runs / "run1" / ".model.pth.tmp.pth").write_bytes(b"partial")

    paths = [entry.path for entry in list_checkpoints(populated.root)]

    assert not [p for p in paths if "/." in p]
    assert "models/tiny/model.pth" in paths


def test_list_checkpoints_on_empty_or_missing_root(tmp_path: Path) -> None:
    assert list_checkpoints(tmp_path / "absent") == []
    (tmp_path / "models").mkdir()
    assert list_checkpoints(tmp_path) == []
