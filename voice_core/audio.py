"""Audio decoding, encoding, resampling and small helpers.

Everything inside the project works on mono ``float32`` arrays in ``[-1, 1]``. This module is the
only place that turns uploaded bytes into such arrays (through PyAV, so any common container works)
and turns arrays back into the bytes the API returns. ``av`` and ``scipy`` are imported inside the
functions that need them so importing this module stays cheap.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from voice_core.errors import AudioDecodeError, InvalidInputError, VoiceError

AUDIO_FORMATS: tuple[str, ...] = ("wav", "flac", "mp3", "opus", "aac", "pcm")

MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "pcm": "audio/pcm",
}

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
# Rate used when an encoder cannot take the caller's rate (e.g. libopus at 22050 Hz).
_FALLBACK_ENCODER_RATE = 48_000


@dataclass(frozen=True)
class AudioStats:
    """Summary numbers of a mono signal.

    Attributes:
        duration_s: length in seconds.
        peak: largest absolute sample value.
        rms: root mean square of the samples.
        sample_rate: samples per second.
        num_samples: number of samples.

    """

    duration_s: float
    peak: float
    rms: float
    sample_rate: int
    num_samples: int


def _check_sample_rate(sample_rate: int, name: str = "sample_rate") -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer number of Hz, got {sample_rate!r}.")
    if not _MIN_SAMPLE_RATE <= sample_rate <= _MAX_SAMPLE_RATE:
        raise InvalidInputError(
            f"{name}={sample_rate} Hz is out of range. Use a rate between {_MIN_SAMPLE_RATE} and "
            f"{_MAX_SAMPLE_RATE} Hz, e.g. 24000."
        )
    return int(sample_rate)


def _as_mono(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise InvalidInputError(
            f"expected a mono 1-D sample array, got shape {array.shape}. Mix the channels down first."
        )
    return array.astype(np.float32, copy=False)


def _clipped(samples: np.ndarray) -> np.ndarray:
    finite = np.nan_to_num(_as_mono(samples), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(finite, -1.0, 1.0)


def _to_int16(samples: np.ndarray) -> np.ndarray:
    return np.round(_clipped(samples) * 32767.0).astype(np.int16)


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Convert float samples to raw 16-bit little-endian PCM.

    Args:
        samples: mono float samples; values outside ``[-1, 1]`` are clipped and NaN becomes silence.

    Returns:
        The PCM bytes, two per sample, with no header.

    """
    return _to_int16(samples).astype("<i2").tobytes()


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
    orig_sr = _check_sample_rate(orig_sr, "orig_sr")
    target_sr = _check_sample_rate(target_sr, "target_sr")
    mono = _as_mono(samples)
    if orig_sr == target_sr or mono.size == 0:
        return mono
    from math import gcd

    from scipy.signal import resample_poly

    divisor = gcd(orig_sr, target_sr)
    return resample_poly(mono, target_sr // divisor, orig_sr // divisor).astype(np.float32)


def audio_stats(samples: np.ndarray, sample_rate: int) -> AudioStats:
    """Measure duration, peak and RMS of a mono signal.

    Args:
        samples: mono float samples.
        sample_rate: rate of ``samples`` in Hz.

    Returns:
        The measurements; peak and rms are 0 for an empty signal.

    """
    sample_rate = _check_sample_rate(sample_rate)
    mono = _as_mono(samples).astype(np.float64)
    if mono.size == 0:
        return AudioStats(0.0, 0.0, 0.0, sample_rate, 0)
    return AudioStats(
        duration_s=mono.size / sample_rate,
        peak=float(np.max(np.abs(mono))),
        rms=float(np.sqrt(np.mean(mono * mono))),
        sample_rate=sample_rate,
        num_samples=int(mono.size),
    )


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

    sample_rate = _check_sample_rate(sample_rate)
    max_samples = None
    if max_seconds is not None:
        if not max_seconds > 0:
            raise InvalidInputError(f"max_seconds must be positive, got {max_seconds!r}.")
        max_samples = int(np.ceil(max_seconds * sample_rate))
    if isinstance(max_channels, bool) or not isinstance(max_channels, (int, np.integer)) or max_channels < 1:
        raise InvalidInputError(f"max_channels must be a whole number of 1 or more, got {max_channels!r}.")

    handle = _open_source(source)
    chunks: list[np.ndarray] = []
    total = 0
    bad_packets = 0
    try:
        try:
            container = av.open(handle, mode="r", options={"format_whitelist": _DEMUXER_WHITELIST})
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            detail = (
                "its container format is not accepted"
                if isinstance(exc, av.error.ArgumentError)
                else _ffmpeg_reason(exc)
            )
            raise AudioDecodeError(
                f"upload is not a recognised audio file ({_ACCEPTED_UPLOADS}): {detail}. Send one of those formats."
            ) from exc
        with container:
            stream = container.streams.best("audio")
            if stream is None and container.streams.audio:
                # FFmpeg skips audio streams it cannot use, such as one whose header declares 0 channels.
                raise AudioDecodeError(
                    f"the {container.format.name} file's audio stream declares "
                    f"{container.streams.audio[0].codec_context.channels} channels and cannot be decoded. "
                    "Send an undamaged audio file."
                )
            if stream is None:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
                raise AudioDecodeError(
                    f"the {container.format.name} file has no audio stream (streams found: {kinds}). "
                    "Send a file that contains audio."
                )
            # What the container declares, checked before a frame is decoded; 0 means "not known yet".
            _check_shape(stream.codec_context.channels, stream.codec_context.sample_rate, max_channels)
            resampler = None
            channels = 0
            layout_key = None
            for packet in container.demux(stream):
                try:
                    frames = stream.decode(packet)
                except av.error.InvalidDataError:
                    bad_packets += 1  # damaged packets are skipped like the ffmpeg CLI does
                    continue
                for frame in frames:
                    # A stream may change rate or layout mid-way; the resampler only takes one setup.
                    key = (frame.format.name, frame.layout.name, frame.sample_rate)
                    if key != layout_key:
                        if not frame.layout.nb_channels or not frame.sample_rate:
                            raise AudioDecodeError(
                                "the audio has frames without channels or sample rate. Send an undamaged audio file."
                            )
                        _check_shape(frame.layout.nb_channels, frame.sample_rate, max_channels)
                        if resampler is not None:
                            total += _drain(resampler.resample(None), chunks, channels)
                        # Keep the channels and average them below: FFmpeg's own stereo-to-mono
                        # matrix sums at -3 dB each, which lifts in-phase stereo by 3 dB and clips.
                        # Packed "flt", never planar: see the docstring.
                        resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=sample_rate)
                        channels = frame.layout.nb_channels
                        layout_key = key
                    frame.pts = None  # resample by sample count only; odd timestamps must not add gaps
                    total += _drain(resampler.resample(frame), chunks, channels)
                    if max_samples is not None and total > max_samples:
                        raise _too_long(max_seconds)
            if resampler is not None:
                total += _drain(resampler.resample(None), chunks, channels)
    except VoiceError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise AudioDecodeError(
            f"audio could not be decoded: {_ffmpeg_reason(exc)}. Send an undamaged audio file."
        ) from exc
    finally:
        handle.close()

    if total == 0:
        detail = f" ({bad_packets} damaged packets)" if bad_packets else ""
        raise AudioDecodeError(f"the file contains no decodable audio samples{detail}. Send a non-empty recording.")
    if max_samples is not None and total > max_samples:
        raise _too_long(max_seconds)
    return np.clip(np.concatenate(chunks), -1.0, 1.0)


def _too_long(max_seconds: float) -> AudioDecodeError:
    return AudioDecodeError(f"audio is longer than the {max_seconds:g} s limit. Trim it to {max_seconds:g} s or less.")


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


def _drain(frames: list, chunks: list[np.ndarray], channels: int) -> int:
    count = 0
    for frame in frames:
        # Packed frames have one plane of interleaved samples: (1, samples * channels).
        data = frame.to_ndarray().reshape(-1, channels).mean(axis=1, dtype=np.float32)
        chunks.append(data)
        count += data.size
    return count


def _encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(float_to_pcm16(samples))
    return buffer.getvalue()


def _pyav_encoder(container_format: str, codec: str, sample_format: str) -> Callable[[np.ndarray, int], bytes]:
    """Build an encoder that writes one mono stream with PyAV into a container held in memory."""

    def encode(samples: np.ndarray, sample_rate: int) -> bytes:
        import av

        supported = av.codec.Codec(codec, "w").audio_rates
        if supported and sample_rate not in supported:
            samples = resample(samples, sample_rate, _FALLBACK_ENCODER_RATE)
            sample_rate = _FALLBACK_ENCODER_RATE
        data = _to_int16(samples) if sample_format == "s16" else _clipped(samples)
        buffer = io.BytesIO()
        # bitexact drops random Ogg serial numbers and version tags, so equal input gives equal bytes.
        with av.open(buffer, mode="w", format=container_format, options={"fflags": "+bitexact"}) as out:
            stream = out.add_stream(codec, rate=sample_rate, layout="mono")
            stream.format = sample_format
            frame = av.AudioFrame.from_ndarray(data[np.newaxis, :], format=sample_format, layout="mono")
            frame.rate = sample_rate
            frame.pts = 0
            # PyAV cuts the frame into the codec's frame size itself.
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return buffer.getvalue()

    return encode


# format -> (PyAV container format, encoder, sample format the encoder takes)
_PYAV_CODECS: dict[str, tuple[str, str, str]] = {
    "flac": ("flac", "flac", "s16"),
    "mp3": ("mp3", "libmp3lame", "fltp"),
    "opus": ("ogg", "libopus", "flt"),
    "aac": ("adts", "aac", "fltp"),
}

_ENCODERS: dict[str, Callable[[np.ndarray, int], bytes]] = {
    "wav": _encode_wav,
    **{fmt: _pyav_encoder(*spec) for fmt, spec in _PYAV_CODECS.items()},
    "pcm": lambda samples, _rate: float_to_pcm16(samples),
}


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode mono float samples into one of the response formats.

    Args:
        samples: mono float samples; values outside ``[-1, 1]`` are clipped.
        sample_rate: rate of ``samples`` in Hz. Encoders that cannot take it (libopus at 22050 Hz,
            say) get the audio resampled to 48000 Hz.
        fmt: one of ``AUDIO_FORMATS``: ``wav`` (PCM16), ``flac``, ``mp3``, ``opus`` (Ogg Opus),
            ``aac`` (ADTS) or ``pcm`` (raw 16-bit little-endian, no header).

    Returns:
        The encoded file as bytes.

    Raises:
        InvalidInputError: unknown ``fmt``, bad ``sample_rate``, empty or non-mono ``samples``.

    """
    encoder = _ENCODERS.get(fmt)
    if encoder is None:
        raise InvalidInputError(f"unknown audio format {fmt!r}. Use one of: {', '.join(AUDIO_FORMATS)}.")
    sample_rate = _check_sample_rate(sample_rate)
    mono = _as_mono(samples)
    if mono.size == 0:
        raise InvalidInputError("there are no samples to encode. Pass a non-empty array.")
    return encoder(mono, sample_rate)


# Muxer options used only while streaming. Ogg closes a page every second by default, which would hold
# back the first second of audio, so pages close every 100 ms; FLAC's 8 KiB of padding exists for
# rewriting tags in place, which a stream never does.
_STREAM_MUXER_OPTIONS: dict[str, dict[str, str]] = {
    "opus": {"page_duration": "100000"},
    "flac": {"metadata_header_padding": "0"},
}


def _streaming_wav_header(sample_rate: int) -> bytes:
    # RIFF and data sizes of 0xFFFFFFFF mean "unknown length", as streaming servers send before the end is known.
    fmt_chunk = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16)
    return struct.pack("<4sI4s", b"RIFF", 0xFFFFFFFF, b"WAVE") + fmt_chunk + struct.pack("<4sI", b"data", 0xFFFFFFFF)


class _WriteOnlySink:
    """Collects what a muxer writes. Having no ``seek`` makes FFmpeg write a live, non-seekable stream."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


class AudioStreamEncoder:
    """Encode mono float32 chunks incrementally into one continuous stream of ``fmt`` bytes.

    Concatenating everything :meth:`encode` and :meth:`finish` return gives one valid file, so the
    pieces can be sent as an HTTP chunked response while the audio is still being generated. Codec
    formats use one PyAV container kept open across chunks, writing to a non-seekable sink: nothing is
    rewritten afterwards, so mp3 has no Xing/LAME header (decoders keep the ~50 ms encoder delay that
    :func:`encode_audio`'s output trims) and flac's STREAMINFO leaves the total length and MD5 unset.
    ``wav`` carries 0xFFFFFFFF sizes and ``pcm`` is raw 16-bit little-endian. Equal chunks give equal bytes.

    Example:
        encoder = AudioStreamEncoder("mp3", 24000)
        for chunk in chunks:
            yield encoder.encode(chunk)
        yield encoder.finish()

    """

    def __init__(self, fmt: str, sample_rate: int) -> None:
        """Open the stream.

        Args:
            fmt: one of ``AUDIO_FORMATS``.
            sample_rate: rate of the chunks in Hz. Encoders that cannot take it (libopus at 22050 Hz,
                say) get the audio resampled to 48000 Hz, as in :func:`encode_audio`.

        Raises:
            InvalidInputError: unknown ``fmt`` or bad ``sample_rate``.

        """
        if fmt not in AUDIO_FORMATS:
            raise InvalidInputError(f"unknown audio format {fmt!r}. Use one of: {', '.join(AUDIO_FORMATS)}.")
        self.fmt = fmt
        self.sample_rate = _check_sample_rate(sample_rate)
        self._pending = _streaming_wav_header(self.sample_rate) if fmt == "wav" else b""
        self._finished = False
        self._container = None
        if fmt in _PYAV_CODECS:
            import av

            container_format, codec, self._sample_format = _PYAV_CODECS[fmt]
            supported = av.codec.Codec(codec, "w").audio_rates
            rate = _FALLBACK_ENCODER_RATE if supported and self.sample_rate not in supported else self.sample_rate
            self._sink = _WriteOnlySink()
            options = {"fflags": "+bitexact", **_STREAM_MUXER_OPTIONS.get(fmt, {})}
            self._container = av.open(self._sink, mode="w", format=container_format, options=options)
            self._stream = self._container.add_stream(codec, rate=rate, layout="mono")
            self._stream.format = self._sample_format
            self._samples_in = 0

    def encode(self, samples: np.ndarray) -> bytes:
        """Add a chunk of audio.

        Args:
            samples: mono float samples at the stream's rate; values outside ``[-1, 1]`` are clipped.
                An empty chunk is allowed.

        Returns:
            The bytes ready so far; ``b""`` while the codec or muxer is still buffering.

        Raises:
            InvalidInputError: ``samples`` is not mono.
            RuntimeError: :meth:`finish` was already called.

        """
        if self._finished:
            raise RuntimeError("AudioStreamEncoder.encode() called after finish(); start a new encoder.")
        mono = _as_mono(samples)
        if self._container is None:
            out, self._pending = self._pending + float_to_pcm16(mono), b""
            return out
        if mono.size:
            import av

            data = _to_int16(mono) if self._sample_format == "s16" else _clipped(mono)
            frame = av.AudioFrame.from_ndarray(data[np.newaxis, :], format=self._sample_format, layout="mono")
            frame.rate = self.sample_rate
            frame.time_base = Fraction(1, self.sample_rate)
            frame.pts = self._samples_in
            self._samples_in += mono.size
            # PyAV resamples to the encoder's rate and cuts its frame size, keeping the remainder for the next chunk.
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._take()

    def finish(self) -> bytes:
        """Flush the encoder and write the trailer; call once, after the last :meth:`encode`.

        Returns:
            The remaining bytes of the stream. A codec stream that never got a sample has no header
            either, so mp3, aac and opus give ``b""`` in total; wav gives a bare header.

        Raises:
            RuntimeError: :meth:`finish` was already called.

        """
        if self._finished:
            raise RuntimeError("AudioStreamEncoder.finish() called twice; start a new encoder.")
        self._finished = True
        if self._container is None:
            return self._pending
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._take()

    def _take(self) -> bytes:
        out = bytes(self._sink.data)
        self._sink.data.clear()
        return out


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write a PCM16 mono WAV file atomically.

    The data goes to a temporary file in the same directory, is flushed to disk and then renamed over
    ``path``, so readers never see a half-written file.

    Args:
        path: destination file; its directory must exist.
        samples: mono float samples; values outside ``[-1, 1]`` are clipped.
        sample_rate: rate of ``samples`` in Hz.

    """
    data = _encode_wav(_as_mono(samples), _check_sample_rate(sample_rate))
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)  # mkstemp's 0600 would hide the file from other readers
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
