"""Tests for voice_core.decode and voice_core.encode on real files made with espeak-ng and the ffmpeg CLI."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_core.decode import DEFAULT_MAX_CHANNELS, decode_audio, probe_duration, resample
from voice_core.encode import AUDIO_FORMATS, MEDIA_TYPES, encode_audio, float_to_pcm16, write_wav
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
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 0.01, "decoded speech is silent"


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
    assert np.abs(samples).max() == pytest.approx(0.5, abs=0.02)


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


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("a.flac", ["-c:a", "flac"]),
        ("a.mp3", ["-c:a", "libmp3lame"]),
        ("a.ogg", ["-c:a", "libvorbis"]),
        ("a.m4a", ["-c:a", "aac"]),
        ("a.mkv", ["-c:a", "libvorbis"]),
    ],
)
def test_probe_accepts_audio_containers(speech_wav: Path, tmp_path: Path, name: str, args: list[str]) -> None:
    _ffmpeg("-i", str(speech_wav), *args, str(tmp_path / name))
    assert probe_duration(tmp_path / name) == pytest.approx(3.0, abs=1.5)


def test_probe_reads_the_audio_of_a_video(speech_wav: Path, tmp_path: Path) -> None:
    video = ["-f", "lavfi", "-i", "color=c=black:s=32x32:d=2", "-c:v", "mpeg4"]
    _ffmpeg(*video, "-i", str(speech_wav), "-shortest", "-c:a", "aac", str(tmp_path / "talk.mp4"))
    assert probe_duration(tmp_path / "talk.mp4") > 1.0
    _ffmpeg(*video, str(tmp_path / "silent.mp4"))
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        probe_duration(tmp_path / "silent.mp4")


def test_probe_gives_a_wav_files_exact_length(tmp_path: Path) -> None:
    # The training checks compare this length with the model's limit to the hundredth of a second.
    write_wav(tmp_path / "clip.wav", np.zeros(158_540, dtype=np.float32), 22050)
    assert probe_duration(tmp_path / "clip.wav") == pytest.approx(158_540 / 22050, abs=1e-5)
    assert probe_duration(str(tmp_path / "clip.wav")) == pytest.approx(158_540 / 22050, abs=1e-5)


def test_probe_rejects_non_audio(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("hello " * 100)
    with pytest.raises(AudioDecodeError, match="empty"):
        probe_duration(tmp_path / "empty.wav")
    with pytest.raises(AudioDecodeError, match="not a recognised audio file"):
        probe_duration(tmp_path / "text.wav")


def _wav_bytes(channels: int, rate: int, frames: np.ndarray | int, declared_data_bytes: int | None = None) -> bytes:
    """A PCM16 WAV written by hand, so its header can say things no encoder would write."""
    if isinstance(frames, int):
        frames = np.zeros((frames, max(channels, 1)), dtype=np.float32)
    data = np.round(np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes()
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, 16)
    size = len(data) if declared_data_bytes is None else declared_data_bytes
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _first_channel_tone(channels: int, rate: int = 48000, seconds: float = 1.0) -> np.ndarray:
    """A 440 Hz tone at 0.8 in channel 0 and silence in the others: averaged, its peak is 0.8 / channels."""
    frames = np.zeros((int(seconds * rate), channels), dtype=np.float32)
    frames[:, 0] = _sine(440, seconds, rate, amplitude=0.8)
    return frames


# Run in a child so that a crash in the decoder shows as its exit status instead of killing pytest.
_DECODE_IN_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from voice_core.decode import decode_audio
    results = {}
    for path in sys.argv[2:]:
        samples = decode_audio(path, 22050, max_channels=int(sys.argv[1]))
        results[path] = [int(samples.size), float(np.abs(samples).max())]
    print(json.dumps(results))
    """
)


@pytest.mark.parametrize("channels", [8, 16, 32])
def test_decode_many_channels_does_not_crash(channels: int, tmp_path: Path):
    # WAV decodes to packed s16; Opus (mapping family 255) and Vorbis decode to planar float, the
    # layout whose to_ndarray crashed PyAV from 8 channels up.
    wav = tmp_path / f"{channels}ch.wav"
    wav.write_bytes(_wav_bytes(channels, 48000, _first_channel_tone(channels)))
    opus = tmp_path / f"{channels}ch.opus"
    _ffmpeg("-i", str(wav), "-c:a", "libopus", "-mapping_family", "255", str(opus))
    vorbis = tmp_path / f"{channels}ch.ogg"
    _ffmpeg("-i", str(wav), "-c:a", "libvorbis", str(vorbis))
    paths = [str(wav), str(opus), str(vorbis)]

    child = subprocess.run(
        [sys.executable, "-c", _DECODE_IN_CHILD, str(channels), *paths],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert child.returncode == 0, f"decoding {channels} channels: exit status {child.returncode}\n{child.stderr}"
    results = json.loads(child.stdout)
    for path in paths:
        size, peak = results[path]
        assert abs(size - 22050) <= 200, path
        # Channels are averaged, not downmixed by FFmpeg's matrix (which would not divide by the count).
        tolerance = 0.01 if path.endswith(".wav") else 0.25 * 0.8 / channels
        assert peak == pytest.approx(0.8 / channels, abs=tolerance), path


def test_decode_rejects_more_channels_than_the_limit_before_decoding():
    twelve = _wav_bytes(12, 16000, _first_channel_tone(12, 16000))
    with pytest.raises(AudioDecodeError, match=r"12 channels; at most 8 are accepted") as excinfo:
        decode_audio(twelve, 16000)
    assert excinfo.value.status_code == 400
    assert DEFAULT_MAX_CHANNELS == 8
    assert decode_audio(twelve, 16000, max_channels=12).size == 16000
    with pytest.raises(AudioDecodeError, match=r"12 channels; at most 2 are accepted"):
        decode_audio(twelve, 16000, max_channels=2)
    # The header alone is refused: the count comes from the stream, before any frame is decoded.
    with pytest.raises(AudioDecodeError, match=r"12 channels"):
        decode_audio(_wav_bytes(12, 16000, 0), 16000)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_decode_rejects_bad_max_channels(bad):
    with pytest.raises(InvalidInputError, match="max_channels"):
        decode_audio(_wav_bytes(1, 16000, 1600), 16000, max_channels=bad)


@pytest.mark.parametrize(
    ("label", "payload", "message"),
    [
        ("0 channels", _wav_bytes(0, 16000, 100), "declares 0 channels"),
        ("65535 channels", _wav_bytes(65535, 16000, 1), "declares 0 channels"),
        ("1 Hz", _wav_bytes(1, 1, 16000), "sample rate is 1 Hz"),
        ("10 MHz", _wav_bytes(1, 10_000_000, 16000), "sample rate is 10000000 Hz"),
        ("2**31-1 Hz", _wav_bytes(1, 2**31 - 1, 16000), "sample rate is 2147483647 Hz"),
    ],
)
def test_decode_rejects_hostile_headers_cleanly(label: str, payload: bytes, message: str):
    with pytest.raises(AudioDecodeError, match=message) as excinfo:
        decode_audio(payload, 16000)
    assert "Send" in str(excinfo.value), label


def test_decode_reads_what_is_there_when_the_header_claims_more():
    lying = _wav_bytes(1, 16000, np.full((1600, 1), 0.5, dtype=np.float32), declared_data_bytes=0xFFFFFFF0)
    samples = decode_audio(lying, 16000, max_seconds=30)
    assert samples.size == 1600


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
    assert np.abs(decoded).max() == pytest.approx(0.5, abs=0.05)


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
