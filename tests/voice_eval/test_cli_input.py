"""Bad input to ``python -m voice_eval score``: exit 2 with a clear message, before any model loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voice_eval import asr, score
from voice_eval.__main__ import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded for bad input")

    monkeypatch.setattr(asr, "load_asr", fail)
    monkeypatch.setattr(score.similarity, "load_encoder", fail)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["score", *argv])
    return code, capsys.readouterr().err


@pytest.mark.usefixtures("no_models")
def test_missing_clip_and_reference(capsys: pytest.CaptureFixture[str], speech_wav: Path, tmp_path: Path) -> None:
    code, err = _run(
        capsys, "--text", "hello", "--language", "en", "--reference", str(speech_wav), str(tmp_path / "x.wav")
    )
    assert code == 2
    assert "clip" in err and "x.wav" in err and "does not exist" in err
    code, err = _run(
        capsys, "--text", "hello", "--language", "en", "--reference", str(tmp_path / "r.wav"), str(speech_wav)
    )
    assert code == 2
    assert "reference" in err and "r.wav" in err


@pytest.mark.usefixtures("no_models")
@pytest.mark.parametrize(
    ("language", "model", "message"),
    [
        ("de", "tiny.en", "English only"),
        ("fr-FR", "tiny.en", "English only"),
        ("xx", "base", "not one Whisper can transcribe"),
        ("klingon", "tiny.en", "not one Whisper can transcribe"),
    ],
)
def test_unsupported_language(
    capsys: pytest.CaptureFixture[str], speech_wav: Path, language: str, model: str, message: str
) -> None:
    code, err = _run(
        capsys,
        "--text",
        "hallo",
        "--language",
        language,
        "--asr-model",
        model,
        "--reference",
        str(speech_wav),
        str(speech_wav),
    )
    assert code == 2
    assert message in err and repr(language) in err


@pytest.mark.usefixtures("no_models")
def test_silent_reference(capsys: pytest.CaptureFixture[str], speech_wav: Path, tmp_path: Path) -> None:
    from voice_core.encode import write_wav

    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(16_000, dtype=np.float32), 16_000)
    code, err = _run(capsys, "--text", "hello", "--language", "en", "--reference", str(silent), str(speech_wav))
    assert code == 2
    assert "silent.wav" in err and "no speech" in err


@pytest.mark.usefixtures("no_models")
def test_unknown_asr_model(capsys: pytest.CaptureFixture[str], speech_wav: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    argv = ["--text", "hi", "--language", "de", "--asr-model", missing, "--reference", str(speech_wav)]
    code, err = _run(capsys, *argv, str(speech_wav))
    assert code == 2
    assert "no-such-model" in err and "not available offline" in err


@pytest.mark.usefixtures("no_models")
def test_undecodable_audio_and_empty_text(capsys: pytest.CaptureFixture[str], speech_wav: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 10)
    code, err = _run(capsys, "--text", "hello", "--language", "en", "--reference", str(speech_wav), str(junk))
    assert code == 2
    assert err.startswith("error: clip ") and "junk.wav" in err and "cannot be decoded" in err
    code, err = _run(capsys, "--text", " ... ", "--language", "en", "--reference", str(speech_wav), str(speech_wav))
    assert code == 2 and "no words" in err


def test_command_line_exit_status(speech_wav: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "voice_eval",
            "score",
            "--text",
            "hi",
            "--language",
            "de",
            "--reference",
            str(speech_wav),
            str(speech_wav),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "English only" in result.stderr
    assert "Traceback" not in result.stderr
