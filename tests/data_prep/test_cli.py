"""Options and the command line: validation, parsing and exit statuses (no Ray needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_prep.cli import config_from_args, main, option_fields, parser
from data_prep.config import (
    BuildConfig,
    InvalidOptionError,
    ResourceOptions,
    SegmentOptions,
    TranscribeOptions,
    read_config_file,
    write_config_file,
)
from voice_core.errors import InvalidInputError


def _args(*extra: str) -> BuildConfig:
    return config_from_args(parser().parse_args(["build", "-i", "x", "-o", "y", *extra]))


FLAGS = (
    *("--language", "pt", "--model", "base", "--max-clip-s", "10", "--min-snr-db", "none"),
    *("--transcribe-pool-size", "2", "--batch-size", "3", "--reject-cut-words", "false"),
    *("--set", "filters.min_avg_logprob=-0.8", "--set", "transcribe.temperatures=[0.0, 0.2]"),
)


def test_flags_and_set_reach_the_config() -> None:
    config = _args(*FLAGS, "--set", "filters.reject_duplicates=false")
    assert config.transcribe.language == "pt" and config.transcribe.model == "base"
    assert config.segment.max_clip_s == 10.0
    assert config.filters.min_snr_db is None and config.filters.min_avg_logprob == -0.8
    assert config.filters.reject_duplicates is False and config.filters.reject_cut_words is False
    assert config.transcribe.temperatures == (0.0, 0.2)
    assert (config.resources.transcribe_pool_size, config.resources.transcribe_batch_size) == (2, 3)
    assert _args("--language", "en").filters.min_snr_db == 15.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (BuildConfig(segment=SegmentOptions(min_clip_s=5, max_clip_s=5)), "segment.max_clip_s"),
        (BuildConfig(transcribe=TranscribeOptions(language="pt")), "English-only"),
        (BuildConfig(transcribe=TranscribeOptions(language="xx")), "language='xx'"),
        (BuildConfig(resources=ResourceOptions(transcribe_num_cpus=0)), "transcribe_num_cpus"),
    ],
)
def test_invalid_options_name_the_option(config: BuildConfig, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        config.validate()


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"filters": {"min_snr": 3}}, "filters.min_snr", "unknown filters option 'min_snr'; known: .*min_snr_db"),
        ({"filter": {}}, "filter", "unknown data-prep option section 'filter'; known: .*filters"),
        ({"segment": {"max_clip_s": "long"}}, "segment.max_clip_s", "max_clip_s='long': input should be a valid num"),
        ({"segment": {"min_clip_s": 5, "max_clip_s": 5}}, "segment.max_clip_s", r"expected more than min_clip_s"),
        ({"resources": {"transcribe_pool_size": 1.5}}, "resources.transcribe_pool_size", "valid integer"),
        ({"transcribe": {"language": "pt"}}, "transcribe.language", "English-only .*'base'"),
        ({"segment": 3}, "segment", "segment=3"),
        ([1, 2], "config", "must be a JSON object"),
    ],
)
def test_config_from_plain_data_names_the_bad_field(options: object, field: str, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message) as caught:
        BuildConfig.from_options(options)  # type: ignore[arg-type]
    assert isinstance(caught.value, InvalidInputError) and caught.value.field == field


def test_config_json_round_trip(tmp_path: Path) -> None:
    config = BuildConfig.from_options({"segment": {"pad_ms": 100}, "transcribe": {"temperatures": [0.0, 0.4]}})
    assert config.segment.pad_ms == 100 and config.transcribe.temperatures == (0.0, 0.4)
    assert config.filters == BuildConfig().filters  # sections left out keep their defaults
    path = write_config_file(config, tmp_path / "config.json")
    assert read_config_file(path) == config == BuildConfig.from_options(json.loads(path.read_text()))
    path.write_text("{not json")
    with pytest.raises(InvalidOptionError, match="not valid JSON"):
        read_config_file(path)
    with pytest.raises(InvalidOptionError, match="cannot read the config file"):
        read_config_file(tmp_path / "missing.json")


def test_config_file_gives_the_same_config_as_flags(tmp_path: Path) -> None:
    from_flags = _args(*FLAGS)
    path = write_config_file(from_flags, tmp_path / "config.json")
    assert _args("--config", str(path)) == from_flags
    with pytest.raises(InvalidOptionError, match=r"--config .* was given with option flags"):
        _args("--config", str(path), "--language", "en")
    with pytest.raises(InvalidOptionError, match="--language is required"):
        _args()


def test_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for section, option in option_fields():
        description = " ".join(option.metadata["help"].split())
        assert len(description) > 10, option.name
        assert f"--{option.name.replace('_', '-')}" in text and f"{description} ({section}.{option.name}" in text


def test_analysis_key_ignores_filters_and_export() -> None:
    base = BuildConfig()
    assert base.analysis_key() == BuildConfig.from_options({"filters": {"min_snr_db": 1.0}}).analysis_key()
    assert base.analysis_key() != BuildConfig.from_options({"segment": {"pad_ms": 100}}).analysis_key()


def test_invalid_config_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "ds")
    assert main(["build", "-i", str(tmp_path), "-o", out, "--language", "pt"]) == 2  # tiny.en is English-only
    assert "English-only" in capsys.readouterr().err
    assert main(["build", "-i", str(tmp_path), "-o", out, "-l", "en", "--set", "filters.nope=1"]) == 2
    assert main(["build", "-i", "https://example.com/v", "-o", out, "-l", "en", "--model", "nowhere"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["build", "-i", str(tmp_path), "-o", out, "--language", "fr"])
    assert exc.value.code == 2


def test_nothing_usable_exits_1_and_reports_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "in"
    data.mkdir()
    (data / "broken.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    (data / "notes.txt").write_text("text")
    status = main(["build", "-i", str(data), "-o", str(tmp_path / "ds"), "-l", "en", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 1
    assert "no usable clips" in captured.err
    assert "broken" in captured.out and "unsupported" in captured.out
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["kept"] == 0
    assert {s["source_id"]: s["status"] for s in manifest["sources"]} == {"broken": "error", "notes": "unsupported"}
    assert (tmp_path / "ds" / "metadata.csv").read_text() == ""


@pytest.mark.parametrize(
    ("num_cpus", "threads", "workers"),
    [(0.25, 1, 1), (1.0, 1, 1), (1.5, 1, 2), (3.6, 1, 4), (4.0, 2, 2), (1.0, 2, 1)],
)
def test_transcriber_workers_follow_the_reserved_cpus(num_cpus: float, threads: int, workers: int) -> None:
    assert ResourceOptions(transcribe_cpu_threads=threads).transcribe_workers(num_cpus) == workers


def test_transcriber_cpus_default_to_a_share_of_the_cluster() -> None:
    resources = BuildConfig().validate().resources
    assert resources.transcribe_num_cpus is None and resources.light_cpus() == 0.5
    assert resources.actor_cpus(1.5) == 2.0 and ResourceOptions(transcribe_num_cpus=1.0).actor_cpus(1.5) == 1.5
    with pytest.raises(InvalidInputError, match="transcribe_cpu_threads"):
        BuildConfig(resources=ResourceOptions(transcribe_cpu_threads=0)).validate()
