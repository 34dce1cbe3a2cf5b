"""Writing audio: mono float samples to the response formats, whole or streamed, and to WAV files.

Everything inside the project works on mono ``float32`` arrays in ``[-1, 1]``; :mod:`voice_core.decode`
makes them from files and uploads, and this module turns them back into the bytes the API returns.
``av`` is imported inside the functions that need it so importing this module stays cheap.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import wave
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from voice_core.decode import as_mono, check_sample_rate, resample
from voice_core.errors import InvalidInputError

AUDIO_FORMATS: tuple[str, ...] = ("wav", "flac", "mp3", "opus", "aac", "pcm")

MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "pcm": "audio/pcm",
}

# Rate used when an encoder cannot take the caller's rate (e.g. libopus at 22050 Hz).
_FALLBACK_ENCODER_RATE = 48_000


def _clipped(samples: np.ndarray) -> np.ndarray:
    finite = np.nan_to_num(as_mono(samples), nan=0.0, posinf=1.0, neginf=-1.0)
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
    sample_rate = check_sample_rate(sample_rate)
    mono = as_mono(samples)
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
        self.sample_rate = check_sample_rate(sample_rate)
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
        mono = as_mono(samples)
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
    data = _encode_wav(as_mono(samples), check_sample_rate(sample_rate))
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
