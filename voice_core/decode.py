"""Reading audio: decoding uploads and files, probing their length, and resampling.

Everything inside the project works on mono ``float32`` arrays in ``[-1, 1]``. This module is the
only place that turns uploaded bytes into such arrays (through PyAV, so any common container works);
:mod:`voice_core.encode` turns them back into bytes. ``av`` and ``scipy`` are imported inside the
functions that need them so importing this module stays cheap.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from voice_core.errors import AudioDecodeError, InvalidInputError, VoiceError

_ACCEPTED_UPLOADS = "wav, flac, mp3, ogg/vorbis, ogg/opus, m4a/aac, or the audio track of mp4/mkv/webm"

# Demuxers an upload may be opened with. Restricting them keeps FFmpeg from treating an upload as a
# playlist (hls, concat) or image sequence that would make it open other files or URLs.
_DEMUXER_WHITELIST = "aac,aiff,caf,flac,matroska,mov,mp3,ogg,wav,w64,webm"

_MIN_SAMPLE_RATE = 1_000
_MAX_SAMPLE_RATE = 384_000
# Rates an input file may have. Outside them a file is damaged or hostile: 1 Hz makes a few bytes
# decode to hours of audio, and rates in the MHz make the resampler's work explode.
_MIN_INPUT_RATE = 1_000
_MAX_INPUT_RATE = 768_000
DEFAULT_MAX_CHANNELS = 8
"""Most channels :func:`decode_audio` accepts by default: 7.1 surround."""


def check_sample_rate(sample_rate: int, name: str = "sample_rate") -> int:
    """Check a sample rate asked for by a caller.

    Args:
        sample_rate: the rate in Hz.
        name: how the error message calls the value.

    Returns:
        The rate as a plain ``int``.

    Raises:
        InvalidInputError: the rate is not an integer between 1000 and 384000 Hz.

    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer number of Hz, got {sample_rate!r}.")
    if not _MIN_SAMPLE_RATE <= sample_rate <= _MAX_SAMPLE_RATE:
        raise InvalidInputError(
            f"{name}={sample_rate} Hz is out of range. Use a rate between {_MIN_SAMPLE_RATE} and "
            f"{_MAX_SAMPLE_RATE} Hz, e.g. 24000."
        )
    return int(sample_rate)


def as_mono(samples: np.ndarray) -> np.ndarray:
    """Return ``samples`` as a 1-D ``float32`` array (a single-row or single-column 2-D array is flattened).

    Raises:
        InvalidInputError: the array has more than one channel or more than two dimensions.

    """
    array = np.asarray(samples)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise InvalidInputError(
            f"expected a mono 1-D sample array, got shape {array.shape}. Mix the channels down first."
        )
    return array.astype(np.float32, copy=False)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Change the sample rate of a mono signal with a polyphase filter.

    Args:
        samples: mono float samples.
        orig_sr: rate of ``samples`` in Hz.
        target_sr: wanted rate in Hz.

    Returns:
        ``float32`` samples at ``target_sr``; the input itself (as float32) when the rates are equal.

    Raises:
        InvalidInputError: a rate is not a positive integer in range or ``samples`` is not mono.

    """
    orig_sr = check_sample_rate(orig_sr, "orig_sr")
    target_sr = check_sample_rate(target_sr, "target_sr")
    mono = as_mono(samples)
    if orig_sr == target_sr or mono.size == 0:
        return mono
    from math import gcd

    from scipy.signal import resample_poly

    divisor = gcd(orig_sr, target_sr)
    return resample_poly(mono, target_sr // divisor, orig_sr // divisor).astype(np.float32)


def probe_duration(path: str | os.PathLike) -> float:
    """Open a file as media and find its audio stream, without decoding.

    Args:
        path: the file.

    Returns:
        The duration the container declares, in seconds (0 when it does not say).

    Raises:
        AudioDecodeError: the file is empty, not a media file, or has no audio stream.
        OSError: the file cannot be read.

    """
    import av

    path = Path(path)
    if path.stat().st_size == 0:
        raise AudioDecodeError("the file is empty (0 bytes)")
    try:
        with path.open("rb") as handle, av.open(handle, options={"format_whitelist": _DEMUXER_WHITELIST}) as container:
            stream = container.streams.best("audio")
            if stream is None:
                raise AudioDecodeError(f"no audio stream (streams found: {_stream_kinds(container)})")
            if container.duration:
                return container.duration / av.time_base
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            return 0.0
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise AudioDecodeError(f"not a recognised audio file: {_ffmpeg_reason(exc)}") from exc


def decode_audio(
    source: bytes | str | os.PathLike,
    sample_rate: int,
    *,
    max_seconds: float | None = None,
    max_channels: int = DEFAULT_MAX_CHANNELS,
) -> np.ndarray:
    """Decode an audio file or upload to mono float32 at a given rate.

    Channels are averaged (as ``librosa.to_mono`` does), so in-phase stereo keeps its level; a
    surround file with speech only in the centre channel comes out quieter by the channel count.
    Frames are converted to packed (interleaved) float before they reach numpy: PyAV's
    ``to_ndarray`` of planar audio with 8 or more channels reads past the frame's plane pointers
    and crashes the process.

    Args:
        source: the file's bytes, or a path to it.
        sample_rate: rate of the returned samples in Hz.
        max_seconds: when given, audio longer than this is rejected; decoding stops as soon as the
            limit is passed, so an over-long upload costs little.
        max_channels: audio with more channels than this is rejected before any frame is
            decoded (and any frame with more is rejected too, should a stream change layout).

    Returns:
        Mono ``float32`` samples in ``[-1, 1]`` at ``sample_rate``.

    Raises:
        AudioDecodeError: the input is empty, not audio, has no audio stream, has more than
            ``max_channels`` channels or a sample rate outside 1000-768000 Hz, decodes to no
            samples, or is longer than ``max_seconds``.
        InvalidInputError: ``sample_rate``, ``max_seconds`` or ``max_channels`` is invalid.

    """
    import av

    sample_rate = check_sample_rate(sample_rate)
    max_samples = _max_samples(max_seconds, sample_rate)
    if isinstance(max_channels, bool) or not isinstance(max_channels, (int, np.integer)) or max_channels < 1:
        raise InvalidInputError(f"max_channels must be a whole number of 1 or more, got {max_channels!r}.")

    handle = _open_source(source)
    mixer = _MonoMixer(sample_rate, max_channels, max_samples, max_seconds)
    try:
        with _open_container(handle) as container:
            stream = _audio_stream(container)
            # What the container declares, checked before a frame is decoded; 0 means "not known yet".
            _check_shape(stream.codec_context.channels, stream.codec_context.sample_rate, max_channels)
            bad_packets = _decode_stream(container, stream, mixer)
    except VoiceError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise AudioDecodeError(
            f"audio could not be decoded: {_ffmpeg_reason(exc)}. Send an undamaged audio file."
        ) from exc
    finally:
        handle.close()

    if mixer.total == 0:
        detail = f" ({bad_packets} damaged packets)" if bad_packets else ""
        raise AudioDecodeError(f"the file contains no decodable audio samples{detail}. Send a non-empty recording.")
    return np.clip(np.concatenate(mixer.chunks), -1.0, 1.0)


def _max_samples(max_seconds: float | None, sample_rate: int) -> int | None:
    if max_seconds is None:
        return None
    if not max_seconds > 0:
        raise InvalidInputError(f"max_seconds must be positive, got {max_seconds!r}.")
    return int(np.ceil(max_seconds * sample_rate))


def _open_source(source: bytes | str | os.PathLike) -> io.IOBase:
    # Paths are opened by Python, not FFmpeg, so a string is never read as a URL or protocol.
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioDecodeError("upload is empty (0 bytes). Send a non-empty audio file.")
        return io.BytesIO(bytes(source))
    try:
        handle = open(source, "rb")
    except OSError as exc:
        raise AudioDecodeError(
            f"cannot read audio file {os.fspath(source)!r}: {exc.strerror or exc}. "
            "Check that the path exists and is readable."
        ) from exc
    if os.fstat(handle.fileno()).st_size == 0:
        handle.close()
        raise AudioDecodeError(f"audio file {os.fspath(source)!r} is empty. Send a non-empty audio file.")
    return handle


def _open_container(handle: io.IOBase) -> Any:
    import av

    try:
        return av.open(handle, mode="r", options={"format_whitelist": _DEMUXER_WHITELIST})
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        detail = (
            "its container format is not accepted" if isinstance(exc, av.error.ArgumentError) else _ffmpeg_reason(exc)
        )
        raise AudioDecodeError(
            f"upload is not a recognised audio file ({_ACCEPTED_UPLOADS}): {detail}. Send one of those formats."
        ) from exc


def _audio_stream(container: Any) -> Any:
    stream = container.streams.best("audio")
    if stream is None and container.streams.audio:
        # FFmpeg skips audio streams it cannot use, such as one whose header declares 0 channels.
        raise AudioDecodeError(
            f"the {container.format.name} file's audio stream declares "
            f"{container.streams.audio[0].codec_context.channels} channels and cannot be decoded. "
            "Send an undamaged audio file."
        )
    if stream is None:
        raise AudioDecodeError(
            f"the {container.format.name} file has no audio stream (streams found: {_stream_kinds(container)}). "
            "Send a file that contains audio."
        )
    return stream


def _stream_kinds(container: Any) -> str:
    return ", ".join(sorted({s.type for s in container.streams})) or "none"


def _decode_stream(container: Any, stream: Any, mixer: _MonoMixer) -> int:
    """Feed every frame of ``stream`` to ``mixer``; return how many damaged packets were skipped."""
    import av

    bad_packets = 0
    for packet in container.demux(stream):
        try:
            frames = stream.decode(packet)
        except av.error.InvalidDataError:
            bad_packets += 1  # damaged packets are skipped like the ffmpeg CLI does
            continue
        for frame in frames:
            mixer.add(frame)
    mixer.flush()
    return bad_packets


class _MonoMixer:
    """Resamples decoded frames to packed float at one rate and averages their channels into mono chunks."""

    def __init__(self, sample_rate: int, max_channels: int, max_samples: int | None, max_seconds: float | None) -> None:
        self.sample_rate = sample_rate
        self.max_channels = max_channels
        self.max_samples = max_samples
        self.max_seconds = max_seconds
        self.chunks: list[np.ndarray] = []
        self.total = 0
        self._resampler: Any = None
        self._channels = 0
        self._layout_key: tuple[str, str, int] | None = None

    def add(self, frame: Any) -> None:
        """Resample and mix one frame; raise once the audio is longer than ``max_seconds``."""
        # A stream may change rate or layout mid-way; the resampler only takes one setup.
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._layout_key:
            self._start(frame, key)
        frame.pts = None  # resample by sample count only; odd timestamps must not add gaps
        self._drain(self._resampler.resample(frame))

    def flush(self) -> None:
        """Take what the current resampler still holds."""
        if self._resampler is not None:
            self._drain(self._resampler.resample(None))

    def _start(self, frame: Any, key: tuple[str, str, int]) -> None:
        import av

        if not frame.layout.nb_channels or not frame.sample_rate:
            raise AudioDecodeError(
                "the audio has frames without channels or sample rate. Send an undamaged audio file."
            )
        _check_shape(frame.layout.nb_channels, frame.sample_rate, self.max_channels)
        self.flush()
        # Keep the channels and average them in _drain: FFmpeg's own stereo-to-mono matrix sums at
        # -3 dB each, which lifts in-phase stereo by 3 dB and clips. Packed "flt", never planar: see
        # decode_audio's docstring.
        self._resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=self.sample_rate)
        self._channels = frame.layout.nb_channels
        self._layout_key = key

    def _drain(self, frames: list) -> None:
        for frame in frames:
            # Packed frames have one plane of interleaved samples: (1, samples * channels).
            data = frame.to_ndarray().reshape(-1, self._channels).mean(axis=1, dtype=np.float32)
            self.chunks.append(data)
            self.total += data.size
        if self.max_samples is not None and self.total > self.max_samples:
            raise AudioDecodeError(
                f"audio is longer than the {self.max_seconds:g} s limit. Trim it to {self.max_seconds:g} s or less."
            )


def _ffmpeg_reason(exc: Exception) -> str:
    # FFmpeg messages end with the input's name, which for uploads is a meaningless '<none>'.
    return getattr(exc, "strerror", None) or str(exc)


def _check_shape(channels: int, rate: int, max_channels: int) -> None:
    # 0 stands for "not declared" (the frames are checked again once decoded).
    if channels > max_channels:
        raise AudioDecodeError(
            f"the audio has {channels} channels; at most {max_channels} are accepted. "
            "Mix it down to mono or stereo and send it again."
        )
    if rate and not _MIN_INPUT_RATE <= rate <= _MAX_INPUT_RATE:
        raise AudioDecodeError(
            f"the audio's sample rate is {rate} Hz; accepted are {_MIN_INPUT_RATE} to {_MAX_INPUT_RATE} Hz. "
            "Send an undamaged file recorded at a usual rate such as 16000, 44100 or 48000 Hz."
        )
