"""Pre-flight checks: every bad dataset, model or run name is refused before any compute, naming the problem."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import espeak
from tests.train_jobs.conftest import small_config
from train_jobs.cli import main
from train_jobs.config import parse_config
from train_jobs.runner import check_only, prepare_run
from voice_core.errors import ConflictError, InvalidInputError, ModelFilesMissingError, NotFoundError
from voice_core.settings import Settings


def dataset_dir(settings: Settings) -> Path:
    return Path(settings.storage_root) / "datasets" / "speaker"


def test_good_dataset_passes_and_counts(train_settings: Settings) -> None:
    summary = check_only(small_config(), train_settings)
    assert summary["dataset"]["train_clips"] == 6 and summary["dataset"]["eval_clips"] == 2
    assert summary["dataset"]["language"] == "en"
    assert summary["total_steps"] == 2 * 3  # 6 clips / batch 2 = 3 steps per epoch
    assert not (Path(train_settings.storage_root) / "runs" / "run").exists()  # a check leaves nothing behind


def test_missing_dataset(train_settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        check_only(small_config(dataset="nothing-here"), train_settings)


def test_empty_metadata(train_settings: Settings) -> None:
    directory = dataset_dir(train_settings)
    for name in ("metadata_train.csv", "metadata_eval.csv"):
        (directory / name).unlink()
    (directory / "metadata.csv").write_text("\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no clips"):
        check_only(small_config(), train_settings)


def test_malformed_line_is_named(train_settings: Settings) -> None:
    path = dataset_dir(train_settings) / "metadata_train.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = "just-an-id-without-text"
    lines[4] = "speaker-00004|a|b|c"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as info:
        check_only(small_config(), train_settings)
    message = str(info.value)
    assert "metadata_train.csv:3" in message and "metadata_train.csv:5" in message and "2 problem(s)" in message
    assert message.startswith(f"dataset {dataset_dir(train_settings)} has 2 problem(s):")


def test_missing_wav_is_named(train_settings: Settings) -> None:
    (dataset_dir(train_settings) / "wavs" / "speaker-00001.wav").unlink()
    with pytest.raises(InvalidInputError, match=r"metadata_train.csv:2: wavs/speaker-00001.wav unreadable"):
        check_only(small_config(), train_settings)


def test_clip_too_long_for_the_model(train_settings: Settings) -> None:
    # The tiny model's GPT holds 80 audio codes (~3.7 s); this sentence takes about five seconds.
    espeak(
        dataset_dir(train_settings) / "wavs" / "speaker-00000.wav",
        "this sentence is much too long for the tiny model to learn from in one piece",
    )
    with pytest.raises(InvalidInputError, match=r"metadata_train.csv:1: clip speaker-00000 is .* longer than"):
        check_only(small_config(), train_settings)


def test_text_the_tokenizer_cannot_encode(train_settings: Settings) -> None:
    path = dataset_dir(train_settings) / "metadata_train.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[0] = "speaker-00000|你好世界|你好世界"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"metadata_train\.csv:1: text has characters the tokenizer cannot"):
        check_only(small_config(), train_settings)


def test_text_too_many_tokens(train_settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match=r"tokens, more than 8"):
        check_only(small_config(max_text_tokens=8), train_settings)


def test_language_the_tokenizer_lacks(train_settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match="tokenizer has no language 'ja'"):
        check_only(small_config(language="ja"), train_settings)


def test_too_little_audio(train_settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match=r"less than the 120 s required; add recordings or lower"):
        check_only(small_config(min_audio_s=120), train_settings)


def test_unknown_base_model(train_settings: Settings) -> None:
    with pytest.raises(NotFoundError, match="model 'no-such-model' not found"):
        check_only(small_config(base_model="no-such-model"), train_settings)


def test_base_model_without_dvae(train_settings: Settings) -> None:
    models = Path(train_settings.storage_root) / "models"
    shutil.copytree(
        models / "tiny-xtts",
        models / "no-dvae",
        copy_function=shutil.copyfile,
        ignore=shutil.ignore_patterns("dvae.pth"),
    )
    with pytest.raises(ModelFilesMissingError, match=r"dvae\.pth missing"):
        check_only(small_config(base_model="no-dvae"), train_settings)


def test_run_name_clash_names_the_difference(train_settings: Settings) -> None:
    prepare_run(small_config(), train_settings)
    prepare_run(small_config(num_workers=2), train_settings)  # resources may change on resume
    with pytest.raises(ConflictError, match=r"lr: 0.001 -> 0.01"):
        prepare_run(small_config(lr=1e-2), train_settings)
    record = json.loads((Path(train_settings.storage_root) / "runs" / "run" / "run.json").read_text())
    assert record["identity"]["lr"] == 1e-3  # the stored record is untouched


def test_bad_options_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="run_name"):
        parse_config({"dataset": "d", "base_model": "m", "run_name": "../escape"})
    with pytest.raises(InvalidInputError, match="lr"):
        parse_config({"dataset": "d", "base_model": "m", "run_name": "r", "lr": -1})
    with pytest.raises(InvalidInputError, match="unknown_option"):
        parse_config({"dataset": "d", "base_model": "m", "run_name": "r", "unknown_option": 1})


def test_cli_exit_status_2_names_the_problem(
    train_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AVS_STORAGE_ROOT", str(train_settings.storage_root))
    status = main(["finetune", "--dataset", "speaker", "--base-model", "tiny-xtts", "--run-name", "r", "--check"])
    assert status == 2
    assert "less than the 120 s required" in capsys.readouterr().err
    status = main(
        [
            "finetune",
            "--dataset",
            "speaker",
            "--base-model",
            "tiny-xtts",
            "--run-name",
            "r",
            "--check",
            "--min-audio-s",
            "1",
            "--lora-targets",
            "c_attn,c_fc",
        ]
    )
    assert status == 0
    assert json.loads(capsys.readouterr().out)["total_steps"] == 10 * 2  # defaults: 10 epochs, batch 4


def test_dataset_in_storage_ignores_the_working_directory(
    train_settings: Settings, train_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(train_settings.storage_root)
    cwd = tmp_path / "cwd"
    shutil.copytree(train_dataset, cwd / "elsewhere")
    monkeypatch.chdir(cwd)
    assert check_only(small_config(dataset="elsewhere"), train_settings)["dataset"]["train_clips"] == 6  # the CLI
    shutil.copytree(train_dataset, root / "elsewhere")
    for directory in (cwd, root):  # the API's command runs in the storage root
        monkeypatch.chdir(directory)
        with pytest.raises(NotFoundError) as info:
            check_only(small_config(dataset="elsewhere"), train_settings, dataset_in_storage=True)
        assert "dataset 'elsewhere' does not exist in storage/datasets" in str(info.value)
        assert str(tmp_path) not in str(info.value)
    with pytest.raises(InvalidInputError, match="invalid dataset name"):
        check_only(small_config(dataset="../speaker"), train_settings, dataset_in_storage=True)
    summary = check_only(small_config(), train_settings, dataset_in_storage=True)
    assert summary["dataset"]["train_clips"] == 6


def test_dataset_problems_name_storage_paths_for_api_runs(train_settings: Settings) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_only(small_config(min_audio_s=600), train_settings, dataset_in_storage=True)
    message = str(info.value)
    assert "dataset storage/datasets/speaker has" in message and str(train_settings.storage_root) not in message


def _config_file(path: Path, **values: object) -> Path:
    options = {
        "dataset": "speaker",
        "base_model": "tiny-xtts",
        "run_name": "r",
        "min_audio_s": 1.0,
        "progress_bar": False,
        **values,
    }
    path.write_text(json.dumps(options), encoding="utf-8")
    return path


def test_cli_config_file_keeps_commas_and_dashes(
    train_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AVS_STORAGE_ROOT", str(train_settings.storage_root))
    sentences = ["Hello, world.", "-dash first"]
    config = _config_file(tmp_path / "run.json", test_sentences=sentences, lora_targets=["c_attn", "c_fc"])
    status = main(["finetune", "--config", str(config), "--dataset-in-storage", "--check"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    options = json.loads(captured.out)["options"]
    assert options["test_sentences"] == sentences and options["lora_targets"] == ["c_attn", "c_fc"]


def test_cli_config_file_errors_exit_2(
    train_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AVS_STORAGE_ROOT", str(train_settings.storage_root))
    config = _config_file(tmp_path / "run.json")
    assert main(["finetune", "--config", str(config), "--epochs", "3", "--check"]) == 2
    assert "--config" in (err := capsys.readouterr().err) and "--epochs" in err and "flags" in err
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    assert main(["finetune", "--config", str(tmp_path / "bad.json"), "--check"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    assert main(["finetune", "--config", str(tmp_path / "list.json"), "--check"]) == 2
    assert "not an object" in capsys.readouterr().err
    _config_file(tmp_path / "unknown.json", colour="blue")
    assert main(["finetune", "--config", str(tmp_path / "unknown.json"), "--check"]) == 2
    assert "colour" in capsys.readouterr().err
    assert main(["finetune", "--config", str(tmp_path / "absent.json"), "--check"]) == 2
    assert "cannot read the config file" in capsys.readouterr().err
    assert main(["finetune", "--dataset", "speaker", "--check"]) == 2
    assert "--base-model, --run-name are required" in capsys.readouterr().err
