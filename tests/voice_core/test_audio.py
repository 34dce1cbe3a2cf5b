"""Tests for voice_core.audio on real files made with espeak-ng and the ffmpeg CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_core.audio import (
    AUDIO_FORMATS,
    MEDIA_TYPES,
    audio_stats,
    decode_audio,
    encode_audio,
    float_to_pcm16,
    resample,
    write_wav,
)
from voice_core.errors import AudioDecodeError, InvalidInputError

SPEECH_TEXT = "The quick brown fox jumps over the lazy dog."

# name -> (file suffix, ffmpeg output arguments)
UPLOAD_FORMATS = {
    "flac": (".flac", ["-c:a", "flac"]),
    "mp3": (".mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    "ogg_vorbis": (".ogg", ["-c:a", "libvorbis"]),
    "ogg_opus": (".opus", ["-c:a", "libopus", "-b:a", "32k"]),
    "m4a_aac": (".m4a", ["-c:a", "aac", "-b:a", "64k"]),
    "mkv_vorbis": (".mkv", ["-c:a", "libvorbis"]),
}

EXPECTED_CODECS = {"wav": "pcm_s16le", "flac": "flac", "mp3": "mp3", "opus": "opus", "aac": "aac"}


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def _probe_streams(path: Path) -> list[dict]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout)["streams"]


def _sine(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_hz(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / sample_rate)[np.argmax(spectrum)])


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    speech = root / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(speech), SPEECH_TEXT], check=True)
    files = {"speech_wav": speech}
    for name, (suffix, codec_args) in UPLOAD_FORMATS.items():
        files[name] = root / f"speech_{name}{suffix}"
        _ffmpeg("-i", str(speech), *codec_args, str(files[name]))

    stereo = root / "sine_stereo.wav"
    tone = _sine(440, 2.0, 44100)
    sf.write(stereo, np.stack([tone, tone], axis=1), 44100, subtype="PCM_16")
    files["sine_stereo"] = stereo

    files["video_with_audio"] = root / "clip.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=5",
        "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
        "-shortest", "-c:v", "mpeg4", "-c:a", "aac", str(files["video_with_audio"]),
    )  # fmt: skip
    files["video_only"] = root / "silent.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1",
        "-c:v", "mpeg4", str(files["video_only"]),
    )  # fmt: skip
    return files


@pytest.fixture(scope="module")
def speech_seconds(media: dict[str, Path]) -> float:
    info = sf.info(media["speech_wav"])
    assert info.duration > 1.0, "espeak-ng produced suspiciously short speech"
    return info.duration


@pytest.mark.parametrize("name", ["speech_wav", *UPLOAD_FORMATS])
def test_decode_common_formats_to_mono_float32(name: str, media: dict[str, Path], speech_seconds: float):
    samples = decode_audio(media[name], 16000)

    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert abs(samples.size / 16000 - speech_seconds) <= 0.1
    assert np.abs(samples).max() <= 1.0
    assert audio_stats(samples, 16000).rms > 0.01, "decoded speech is silent"


def test_decode_accepts_bytes_same_as_path(media: dict[str, Path]):
    path = media["ogg_opus"]
    from_path = decode_audio(path, 24000)
    from_bytes = decode_audio(path.read_bytes(), 24000)
    from_str = decode_audio(str(path), 24000)

    np.testing.assert_array_equal(from_path, from_bytes)
    np.testing.assert_array_equal(from_path, from_str)


def test_decode_downmixes_stereo_and_resamples(media: dict[str, Path]):
    samples = decode_audio(media["sine_stereo"], 22050)

    assert samples.ndim == 1
    # 2 s at 44.1 kHz is exactly 44100 samples at 22.05 kHz once the resampler is flushed.
    assert abs(samples.size - 44100) <= 2
    assert abs(_dominant_hz(samples, 22050) - 440) < 5
    # Identical channels mix to the same level, not to double it.
    assert audio_stats(samples, 22050).peak == pytest.approx(0.5, abs=0.02)


def test_decode_audio_track_of_video(media: dict[str, Path]):
    samples = decode_audio(media["video_with_audio"], 16000)

    assert abs(samples.size / 16000 - 2.0) <= 0.1
    assert abs(_dominant_hz(samples, 16000) - 440) < 5


def test_decode_video_without_audio_is_rejected(media: dict[str, Path]):
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        decode_audio(media["video_only"], 16000)


@pytest.mark.parametrize(
    ("label", "payload"),
    [
        ("text", b"name,text\nclip1,hello there\nclip2,general kenobi\n"),
        ("png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00"),
        ("random", np.random.default_rng(1234).integers(0, 256, 8192, dtype=np.uint8).tobytes()),
    ],
)
def test_decode_non_audio_bytes_is_rejected(label: str, payload: bytes):
    with pytest.raises(AudioDecodeError) as excinfo:
        decode_audio(payload, 16000)

    message = str(excinfo.value)
    assert "Send" in message, f"{label}: message does not say how to fix it: {message}"
    assert excinfo.value.status_code == 400


def test_decode_non_audio_message_names_formats():
    with pytest.raises(AudioDecodeError, match=r"not a recognised audio file \(wav, flac, mp3"):
        decode_audio(b"just some text, not audio", 16000)


def test_decode_empty_input_is_rejected(tmp_path: Path):
    with pytest.raises(AudioDecodeError, match="empty"):
        decode_audio(b"", 16000)
    empty_file = tmp_path / "empty.wav"
    empty_file.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        decode_audio(empty_file, 16000)


def test_decode_missing_file_is_rejected(tmp_path: Path):
    with pytest.raises(AudioDecodeError, match="cannot read audio file"):
        decode_audio(tmp_path / "nope.wav", 16000)


def test_decode_zero_samples_is_rejected():
    header_only = encode_audio(np.zeros(1, dtype=np.float32), 16000, "wav")[:44]
    with pytest.raises(AudioDecodeError, match="no decodable audio"):
        decode_audio(header_only, 16000)


def test_decode_rejects_audio_over_max_seconds(media: dict[str, Path], speech_seconds: float):
    with pytest.raises(AudioDecodeError, match="limit"):
        decode_audio(media["mp3"], 16000, max_seconds=1.0)

    samples = decode_audio(media["mp3"], 16000, max_seconds=speech_seconds + 1.0)
    assert samples.size > 16000
    with pytest.raises(InvalidInputError, match="max_seconds"):
        decode_audio(media["mp3"], 16000, max_seconds=0)


@pytest.mark.parametrize("bad_rate", [0, -16000, 16000.5, True, 10_000_000])
def test_decode_rejects_bad_sample_rate(bad_rate, media: dict[str, Path]):
    with pytest.raises(InvalidInputError, match="sample_rate"):
        decode_audio(media["speech_wav"], bad_rate)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "aac"])
def test_encode_round_trip(fmt: str, tmp_path: Path):
    tone = _sine(440, 1.0, 24000)
    encoded = encode_audio(tone, 24000, fmt)
    out = tmp_path / f"tone.{fmt}"
    out.write_bytes(encoded)

    streams = _probe_streams(out)
    assert [s["codec_name"] for s in streams] == [EXPECTED_CODECS[fmt]]
    assert streams[0]["channels"] == 1

    decoded = decode_audio(encoded, 24000)
    assert abs(decoded.size / 24000 - 1.0) <= 0.1
    assert abs(_dominant_hz(decoded, 24000) - 440) < 5
    assert audio_stats(decoded, 24000).peak == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_lossless_formats_keep_samples(fmt: str):
    tone = _sine(300, 0.5, 16000, amplitude=0.8)
    decoded = decode_audio(encode_audio(tone, 16000, fmt), 16000)

    np.testing.assert_allclose(decoded, tone, atol=2.0 / 32767)


def test_encode_opus_resamples_unsupported_rate(tmp_path: Path):
    tone = _sine(440, 1.0, 22050)
    out = tmp_path / "tone.opus"
    out.write_bytes(encode_audio(tone, 22050, "opus"))

    assert _probe_streams(out)[0]["sample_rate"] == "48000"
    decoded = decode_audio(out, 22050)
    assert abs(decoded.size / 22050 - 1.0) <= 0.1
    assert abs(_dominant_hz(decoded, 22050) - 440) < 5


def test_encode_is_deterministic():
    tone = _sine(440, 0.5, 24000)
    for fmt in AUDIO_FORMATS:
        assert encode_audio(tone, 24000, fmt) == encode_audio(tone, 24000, fmt), fmt


def test_encode_pcm_is_raw_int16():
    tone = _sine(440, 0.25, 24000)
    pcm = encode_audio(tone, 24000, "pcm")

    assert len(pcm) == 2 * tone.size
    values = np.frombuffer(pcm, dtype="<i2")
    np.testing.assert_allclose(values / 32767.0, tone, atol=1.0 / 32767)


def test_encode_clips_out_of_range_samples():
    loud = np.array([2.0, -3.0, 0.5, np.nan], dtype=np.float32)

    assert np.frombuffer(float_to_pcm16(loud), dtype="<i2").tolist() == [32767, -32767, 16384, 0]
    decoded = decode_audio(encode_audio(np.tile(loud[:3], 1000), 16000, "wav"), 16000)
    assert np.abs(decoded).max() <= 1.0


def test_encode_rejects_unknown_format():
    with pytest.raises(InvalidInputError, match="unknown audio format 'ogg'") as excinfo:
        encode_audio(np.zeros(100, dtype=np.float32), 24000, "ogg")
    for fmt in AUDIO_FORMATS:
        assert fmt in str(excinfo.value)


def test_encode_rejects_empty_and_multichannel():
    with pytest.raises(InvalidInputError, match="no samples"):
        encode_audio(np.zeros(0, dtype=np.float32), 24000, "wav")
    with pytest.raises(InvalidInputError, match="mono"):
        encode_audio(np.zeros((100, 2), dtype=np.float32), 24000, "wav")


def test_media_types_cover_every_format():
    assert set(MEDIA_TYPES) == set(AUDIO_FORMATS)
    assert MEDIA_TYPES["mp3"] == "audio/mpeg"
    assert MEDIA_TYPES["opus"] == "audio/ogg"


def test_resample_changes_length_and_keeps_pitch():
    tone = _sine(440, 1.0, 48000)
    out = resample(tone, 48000, 16000)

    assert out.dtype == np.float32
    assert out.size == 16000
    assert abs(_dominant_hz(out, 16000) - 440) < 2
    np.testing.assert_array_equal(resample(tone, 48000, 48000), tone)


def test_audio_stats_of_known_sine():
    stats = audio_stats(_sine(100, 2.0, 16000, amplitude=0.6), 16000)

    assert stats.duration_s == pytest.approx(2.0)
    assert stats.num_samples == 32000
    assert stats.sample_rate == 16000
    assert stats.peak == pytest.approx(0.6, abs=1e-3)
    assert stats.rms == pytest.approx(0.6 / np.sqrt(2), abs=1e-3)


def test_audio_stats_of_empty_signal():
    stats = audio_stats(np.zeros(0, dtype=np.float32), 24000)
    assert (stats.duration_s, stats.peak, stats.rms, stats.num_samples) == (0.0, 0.0, 0.0, 0)


def test_write_wav_is_readable_and_leaves_no_temp_files(tmp_path: Path):
    target = tmp_path / "out.wav"
    target.write_bytes(b"old contents")
    tone = _sine(440, 0.5, 24000)

    write_wav(target, tone, 24000)

    data, rate = sf.read(target, dtype="float32")
    info = sf.info(target)
    assert rate == 24000
    assert info.channels == 1
    assert info.subtype == "PCM_16"
    assert target.stat().st_mode & 0o777 == 0o644
    np.testing.assert_allclose(data, tone, atol=2.0 / 32767)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def test_write_wav_failure_leaves_no_temp_files(tmp_path: Path):
    target = tmp_path / "out.wav"
    with pytest.raises(InvalidInputError):
        write_wav(target, np.zeros((10, 3), dtype=np.float32), 24000)
    occupied = tmp_path / "taken.wav"
    occupied.mkdir()
    with pytest.raises(IsADirectoryError):
        write_wav(occupied, np.zeros(10, dtype=np.float32), 24000)
    assert list(tmp_path.iterdir()) == [occupied]
