"""Tests for voice_core.encode.AudioStreamEncoder with the real encoders, checked by decode_audio and ffprobe."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from voice_core.decode import decode_audio
from voice_core.encode import AUDIO_FORMATS, AudioStreamEncoder, float_to_pcm16
from voice_core.errors import InvalidInputError

RATE = 24_000
CHUNK = RATE // 4  # 0.25 s, so a 3 s signal arrives in 12 chunks

EXPECTED_CODECS = {"wav": "pcm_s16le", "flac": "flac", "mp3": "mp3", "opus": "opus", "aac": "aac"}

# How much longer than the input a decoded stream may be, in seconds. A live stream cannot carry
# gapless info: mp3 gets no Xing/LAME header, so its ~50 ms encoder delay stays in; ADTS never carries
# it, so aac keeps 1024 priming samples plus up to one frame of padding (as encode_audio's aac does).
EXTRA_S = {"mp3": 0.06, "aac": 0.09}


def _sine(seconds: float = 3.0, sample_rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def _stream(fmt: str, samples: np.ndarray, sample_rate: int = RATE) -> list[bytes]:
    """Feed `samples` in 0.25 s chunks; the returned list holds one entry per encode() call, then finish()."""
    encoder = AudioStreamEncoder(fmt, sample_rate)
    step = sample_rate // 4
    pieces = [encoder.encode(samples[start : start + step]) for start in range(0, samples.size, step)]
    return [*pieces, encoder.finish()]


def _probe_stream(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    streams = json.loads(result.stdout)["streams"]
    assert len(streams) == 1
    return streams[0]


def _dominant_hz(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * sample_rate / samples.size)


@pytest.fixture(scope="module")
def sine() -> np.ndarray:
    return _sine()


@pytest.fixture(scope="module")
def streams(sine: np.ndarray) -> dict[str, list[bytes]]:
    return {fmt: _stream(fmt, sine) for fmt in AUDIO_FORMATS}


@pytest.mark.parametrize("fmt", AUDIO_FORMATS)
def test_bytes_come_out_before_the_last_chunk(fmt: str, streams: dict[str, list[bytes]]) -> None:
    pieces = streams[fmt]
    before_last_chunk = pieces[:-2]  # everything returned before the 12th chunk was fed
    assert any(before_last_chunk), f"{fmt} returned nothing until the end"
    # Not just a header: most of the stream (audio frames, flac included) is out before the end.
    assert sum(map(len, before_last_chunk)) > 0.5 * sum(map(len, pieces))


@pytest.mark.parametrize("fmt", [f for f in AUDIO_FORMATS if f != "pcm"])
def test_concatenated_stream_is_a_valid_file(
    fmt: str, streams: dict[str, list[bytes]], sine: np.ndarray, tmp_path: Path
) -> None:
    data = b"".join(streams[fmt])
    decoded = decode_audio(data, RATE)
    extra_s = (decoded.size - sine.size) / RATE
    assert 0.0 <= extra_s <= EXTRA_S.get(fmt, 0.0), f"{fmt} decoded {extra_s:+.3f} s off the input"
    assert abs(_dominant_hz(decoded, RATE) - 440.0) < 2.0

    path = tmp_path / f"stream.{fmt}"
    path.write_bytes(data)
    stream = _probe_stream(path)
    assert stream["codec_name"] == EXPECTED_CODECS[fmt]
    assert int(stream["channels"]) == 1
    assert int(stream["sample_rate"]) == (48_000 if fmt == "opus" else RATE)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_lossless_streams_decode_to_the_exact_pcm16(
    fmt: str, streams: dict[str, list[bytes]], sine: np.ndarray
) -> None:
    decoded = decode_audio(b"".join(streams[fmt]), RATE)
    # FFmpeg turns s16 into float by dividing by 32768.
    assert np.round(decoded * 32768).astype("<i2").tobytes() == float_to_pcm16(sine)


def test_wav_header_has_unknown_sizes(streams: dict[str, list[bytes]], sine: np.ndarray) -> None:
    first = streams["wav"][0]
    riff, riff_size, wave_id = struct.unpack("<4sI4s", first[:12])
    data_id, data_size = struct.unpack("<4sI", first[36:44])
    assert (riff, riff_size, wave_id, data_id, data_size) == (b"RIFF", 0xFFFFFFFF, b"WAVE", b"data", 0xFFFFFFFF)
    assert b"".join(streams["wav"])[44:] == float_to_pcm16(sine)


def test_pcm_chunks_are_raw_s16le_of_the_same_length(streams: dict[str, list[bytes]], sine: np.ndarray) -> None:
    pieces = streams["pcm"]
    assert [len(piece) for piece in pieces[:-1]] == [2 * CHUNK] * 12
    assert pieces[-1] == b""
    assert b"".join(pieces) == float_to_pcm16(sine)


@pytest.mark.parametrize("fmt", AUDIO_FORMATS)
def test_same_chunks_give_same_bytes(fmt: str, streams: dict[str, list[bytes]], sine: np.ndarray) -> None:
    assert _stream(fmt, sine) == streams[fmt]


def test_opus_at_a_rate_libopus_lacks_is_resampled() -> None:
    samples = _sine(sample_rate=22_050)
    decoded = decode_audio(b"".join(_stream("opus", samples, 22_050)), 22_050)
    assert abs(decoded.size - samples.size) <= 0.06 * 22_050
    assert abs(_dominant_hz(decoded, 22_050) - 440.0) < 2.0


def test_samples_are_clipped() -> None:
    encoder = AudioStreamEncoder("pcm", RATE)
    data = encoder.encode(np.array([2.0, -3.0, 0.0], dtype=np.float32))
    assert np.frombuffer(data, "<i2").tolist() == [32767, -32767, 0]


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="unknown audio format 'ogg'"):
        AudioStreamEncoder("ogg", RATE)


@pytest.mark.parametrize("fmt", ["pcm", "mp3"])
def test_multichannel_chunks_are_rejected(fmt: str) -> None:
    encoder = AudioStreamEncoder(fmt, RATE)
    with pytest.raises(InvalidInputError, match="mono"):
        encoder.encode(np.zeros((2, 100), dtype=np.float32))


@pytest.mark.parametrize("fmt", ["wav", "aac"])
def test_encoder_cannot_be_used_after_finish(fmt: str) -> None:
    encoder = AudioStreamEncoder(fmt, RATE)
    encoder.encode(_sine(0.1))
    encoder.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        encoder.encode(_sine(0.1))
    with pytest.raises(RuntimeError, match="twice"):
        encoder.finish()
