"""read_references decodes each upload in a child process: a file that breaks the decoder is a 400."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi import UploadFile

from serve_app.http import REFERENCE_RATE, read_references
from tests.voice_core import decoder_faults
from voice_core import isolated
from voice_core.decode import decode_audio
from voice_core.errors import AudioDecodeError
from voice_core.settings import Settings


def _upload(name: str, data: bytes) -> UploadFile:
    return UploadFile(io.BytesIO(data), filename=name)


def _surround(tmp_path: Path, channels: int, speech_wav: Path) -> bytes:
    speech, rate = sf.read(speech_wav, dtype="float32")
    path = tmp_path / f"{channels}ch.wav"
    sf.write(path, np.repeat(speech[:, None], channels, axis=1), rate, subtype="PCM_16")
    return path.read_bytes()


def test_references_are_decoded_in_a_child(
    decoder_pool: isolated.DecoderPool, settings: Settings, speech_wav: Path, tmp_path: Path
) -> None:
    uploads = [_upload("mono.wav", speech_wav.read_bytes()), _upload("7.1.wav", _surround(tmp_path, 8, speech_wav))]

    mono, surround = asyncio.run(read_references(uploads, settings))

    np.testing.assert_array_equal(mono, decode_audio(speech_wav, REFERENCE_RATE))
    np.testing.assert_allclose(surround, mono, atol=1e-4)  # identical channels average to the same signal
    assert decoder_pool.pids() and os.getpid() not in decoder_pool.pids()


def test_too_many_channels_is_refused_with_the_limit(
    decoder_pool: isolated.DecoderPool, settings: Settings, speech_wav: Path, tmp_path: Path
) -> None:
    uploads = [_upload("twelve.wav", _surround(tmp_path, 12, speech_wav))]

    with pytest.raises(AudioDecodeError, match=r"reference 'twelve.wav': the audio has 12 channels; at most 8") as err:
        asyncio.run(read_references(uploads, settings))
    assert err.value.status_code == 400
    more = settings.model_copy(update={"max_audio_channels": 12})
    assert len(asyncio.run(read_references([_upload("twelve.wav", _surround(tmp_path, 12, speech_wav))], more))) == 1


def test_a_decoder_crash_is_a_400_and_the_caller_lives_on(
    decoder_pool: isolated.DecoderPool, settings: Settings, speech_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller = os.getpid()
    monkeypatch.setattr(isolated, "decode_function", decoder_faults.segfault)

    with pytest.raises(AudioDecodeError, match=r"reference 'evil.wav': the decoder crashed on this file") as err:
        asyncio.run(read_references([_upload("evil.wav", speech_wav.read_bytes())], settings))
    assert err.value.status_code == 400

    monkeypatch.setattr(isolated, "decode_function", decode_audio)
    assert len(asyncio.run(read_references([_upload("good.wav", speech_wav.read_bytes())], settings))) == 1
    assert os.getpid() == caller
