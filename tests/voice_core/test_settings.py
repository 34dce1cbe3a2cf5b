"""Tests for voice_core.settings: validation messages, .env, lists, the README table, CLI start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from voice_core.errors import ConfigError
from voice_core.settings import Settings, settings_table

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE_START = "<!-- settings-table:start -->"
TABLE_END = "<!-- settings-table:end -->"


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AVS_* variable from the outer environment and no .env from the real working directory."""
    for name in list(os.environ):
        if name.startswith("AVS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AVS_PORT", "abc"),
        ("AVS_PORT", "70000"),
        ("AVS_DEVICE", "tpu"),
        ("AVS_ALLOWED_MOUNTS", "relative/path"),
    ],
)
def test_invalid_value_names_variable_and_value(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        Settings.load()
    message = str(info.value)
    assert f"{variable}:" in message
    assert value in message


def test_dotenv_values_are_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AVS_PORT=9123\nAVS_BASE_MODEL=my-model\n")
    settings = Settings.load()
    assert settings.port == 9123
    assert settings.base_model == "my-model"


def test_environment_overrides_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("AVS_PORT=9123\nAVS_BASE_MODEL=my-model\n")
    monkeypatch.setenv("AVS_PORT", "9200")
    settings = Settings.load()
    assert settings.port == 9200
    assert settings.base_model == "my-model"


def test_unknown_key_in_dotenv_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AVS_PORT=9123\nAVS_PROT=1\n")
    with pytest.raises(ConfigError) as info:
        Settings.load()
    lines = str(info.value).splitlines()
    assert any(line.strip().startswith("AVS_PROT: unknown setting") for line in lines), lines
    assert "AVS_AVS_PROT" not in str(info.value)


def test_api_keys_comma_list_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVS_API_KEYS", "alpha-key, beta-key")
    settings = Settings.load()
    assert len(settings.api_keys) == 2
    assert all(isinstance(key, SecretStr) for key in settings.api_keys)
    assert [key.get_secret_value() for key in settings.api_keys] == ["alpha-key", "beta-key"]
    shown = repr(settings.api_keys) + repr(settings) + str(settings)
    assert "alpha-key" not in shown
    assert "beta-key" not in shown


def test_allowed_mounts_comma_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AVS_ALLOWED_MOUNTS", f"{tmp_path / 'a'}, {tmp_path / 'b'}")
    assert Settings.load().allowed_mounts == [tmp_path / "a", tmp_path / "b"]


def test_relative_storage_root_is_made_absolute(tmp_path: Path) -> None:
    settings = Settings.load(storage_root="data/store")
    assert settings.storage_root.is_absolute()
    assert settings.storage_root == tmp_path / "data" / "store"
    assert Settings.load().storage_root == tmp_path / "storage"


def test_every_field_has_a_description() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description and field.description.strip(), name


def test_settings_table_has_one_row_per_field() -> None:
    rows = settings_table().splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)
    for row, name in zip(rows, Settings.model_fields, strict=True):
        assert row.startswith(f"| `AVS_{name.upper()}` |")


def test_readme_contains_the_settings_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert TABLE_START in readme and TABLE_END in readme, "README.md lacks the settings-table markers"
    between = readme.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    assert between.strip() == settings_table(), (
        "README settings table is stale; regenerate it with `python -m voice_core settings-table`"
    )


@pytest.mark.parametrize(
    "command",
    [["-m", "serve_app"], ["-m", "voice_core", "list-checkpoints"]],
    ids=["serve_app", "voice_core-list-checkpoints"],
)
def test_cli_fails_at_start_on_invalid_setting(tmp_path: Path, command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVS_")}
    env.update(AVS_PORT="abc", PYTHONPATH=str(REPO_ROOT), AVS_STORAGE_ROOT=str(tmp_path / "storage"))
    result = subprocess.run(
        [sys.executable, *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "AVS_PORT" in result.stderr
    assert "'abc'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "storage").exists()
