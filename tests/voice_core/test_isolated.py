"""Decoding untrusted audio in child processes: crashes and hangs fail one call, never the caller."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.voice_core import decoder_faults
from voice_core import isolated
from voice_core.decode import decode_audio
from voice_core.errors import AudioDecodeError, InvalidInputError

EIGHT_CHANNEL_WAV_BYTES = 844


def _eight_channel_wav(tmp_path: Path) -> bytes:
    """The 844-byte 8-channel WAV that crashed the ingress (400 int16 samples, 8 kHz)."""
    import wave

    path = tmp_path / "eight.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(8)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(np.zeros(400, dtype="<i2").tobytes())
    data = path.read_bytes()
    assert len(data) == EIGHT_CHANNEL_WAV_BYTES
    return data


def _decode(data: bytes, **kwargs) -> np.ndarray:
    return asyncio.run(isolated.decode_untrusted(data, 22050, **kwargs))


def test_decodes_like_decode_audio_in_another_process(decoder_pool: isolated.DecoderPool, speech_wav: Path) -> None:
    data = speech_wav.read_bytes()

    np.testing.assert_array_equal(_decode(data, max_seconds=30), decode_audio(data, 22050, max_seconds=30))
    children = decoder_pool.pids()
    assert children and os.getpid() not in children
    assert _decode(data).size > 0
    assert decoder_pool.pids() == children  # reused, not started again


def test_the_eight_channel_wav_that_crashed_the_ingress_decodes(
    decoder_pool: isolated.DecoderPool, tmp_path: Path
) -> None:
    samples = _decode(_eight_channel_wav(tmp_path), max_channels=8)
    assert samples.dtype == np.float32 and abs(samples.size - 50 * 22050 / 8000) <= 2  # 50 frames at 8 kHz


def test_decoder_errors_come_back_with_their_type(decoder_pool: isolated.DecoderPool, tmp_path: Path) -> None:
    frames = np.zeros((1600, 12), dtype=np.float32)
    sf.write(tmp_path / "twelve.wav", frames, 16000, subtype="PCM_16")
    twelve = (tmp_path / "twelve.wav").read_bytes()

    with pytest.raises(AudioDecodeError, match="12 channels; at most 8 are accepted"):
        _decode(twelve, max_channels=8)
    assert _decode(twelve, max_channels=12).size > 0
    with pytest.raises(InvalidInputError, match="sample_rate"):
        asyncio.run(isolated.decode_untrusted(twelve, 5))
    assert len(decoder_pool.pids()) == 1  # ordinary errors keep the child


@pytest.mark.parametrize(
    ("fault", "signal_name"), [(decoder_faults.segfault, "SIGSEGV"), (decoder_faults.abort, "SIGABRT")]
)
def test_a_crashing_decoder_fails_only_its_call(
    fault, signal_name: str, decoder_pool: isolated.DecoderPool, speech_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = speech_wav.read_bytes()
    _decode(data)
    before = decoder_pool.pids()
    caller = os.getpid()

    monkeypatch.setattr(isolated, "decode_function", fault)
    with pytest.raises(
        AudioDecodeError, match=rf"the decoder crashed on this file \(killed by {signal_name}\)"
    ) as excinfo:
        _decode(data)
    assert excinfo.value.status_code == 400

    monkeypatch.setattr(isolated, "decode_function", decode_audio)
    assert _decode(data).size > 0  # a new child took the dead one's place
    assert os.getpid() == caller
    assert decoder_pool.pids() and set(decoder_pool.pids()).isdisjoint(before)


def test_a_crash_does_not_fail_a_call_running_beside_it(decoder_pool: isolated.DecoderPool, speech_wav: Path) -> None:
    data = speech_wav.read_bytes()

    async def both() -> list:
        crash = decoder_pool.run_async(decoder_faults.segfault, data, timeout_s=60)
        normal = decoder_pool.run_async(decode_audio, data, 22050, timeout_s=60)
        return await asyncio.gather(crash, normal, return_exceptions=True)

    crashed, decoded = asyncio.run(both())
    assert isinstance(crashed, AudioDecodeError) and "crashed" in str(crashed)
    assert isinstance(decoded, np.ndarray) and decoded.size > 0


def test_a_hanging_decoder_is_stopped_and_replaced(
    decoder_pool: isolated.DecoderPool, speech_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = speech_wav.read_bytes()
    monkeypatch.setattr(isolated, "decode_function", decoder_faults.hang)

    with pytest.raises(AudioDecodeError, match=r"decoding took longer than 1 s and was stopped"):
        _decode(data, timeout_s=1)
    assert decoder_pool.pids() == []  # the stuck child was killed, not kept

    monkeypatch.setattr(isolated, "decode_function", decode_audio)
    assert _decode(data).size > 0


def test_children_are_started_lazily_and_by_warm_up() -> None:
    decoder_pool = isolated.DecoderPool(workers=2)
    try:
        assert decoder_pool.pids() == []
        decoder_pool.warm_up()
        children = decoder_pool.pids()
        assert len(children) == 2 and os.getpid() not in children
        assert decoder_pool.run(decoder_faults.pid, timeout_s=60) in children
        decoder_pool.warm_up()  # already full: nothing more starts
        assert sorted(decoder_pool.pids()) == sorted(children)
    finally:
        decoder_pool.close()
    assert decoder_pool.pids() == []
    with pytest.raises(RuntimeError, match="closed"):
        decoder_pool.run(decoder_faults.pid, timeout_s=60)


def test_an_idle_child_killed_from_outside_is_replaced_quietly(
    decoder_pool: isolated.DecoderPool, speech_wav: Path
) -> None:
    data = speech_wav.read_bytes()
    _decode(data)
    (child,) = decoder_pool._idle
    child.process.kill()
    child.process.wait()

    assert _decode(data).size > 0  # not reported as a crash of this file
    assert decoder_pool.pids() and child.pid not in decoder_pool.pids()
