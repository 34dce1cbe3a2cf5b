"""Options of the data-prep pipeline: plain dataclasses with units in the field names.

Each concern has its own options class (segmentation, transcription, filters, export, resources);
:class:`BuildConfig` groups them. :meth:`BuildConfig.from_options` is the one way in from plain data
(a JSON file, the HTTP API, the command line's flags): it checks types and unknown names, then
:meth:`BuildConfig.validate` checks every range at once, so a bad value stops the run before any work
starts with a message naming the option and the fix. Every field carries its description in its
``help`` metadata, which the command line shows in ``--help``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voice_core.errors import InvalidInputError

# Languages the text normaliser knows; Whisper language codes.
SUPPORTED_LANGUAGES: tuple[str, ...] = ("en", "pt")
AUTO_LANGUAGE = "auto"
OUTPUT_SAMPLE_RATE_HZ = 22_050
ANALYSIS_SAMPLE_RATE_HZ = 16_000
DEVICES = ("auto", "cpu", "cuda")
# Rejects unknown keys when pydantic builds these dataclasses from plain data.
_STRICT_KEYS = {"extra": "forbid"}


class InvalidOptionError(InvalidInputError):
    """A data-prep option is unknown, of the wrong type or out of range.

    Attributes:
        field: the option's ``section.name`` (``segment.max_clip_s``), or ``config`` for the whole object.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _opt(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field with its description (and extra command-line hints such as ``choices``)."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class SegmentOptions:
    """How recordings are cut into clips."""

    __pydantic_config__ = _STRICT_KEYS

    min_clip_s: float = _opt(1.0, "shortest clip kept, seconds (the duration filter rejects shorter ones)")
    max_clip_s: float = _opt(
        11.6,
        "longest clip, seconds; regions are grouped so a clip never exceeds it (11.6 s is XTTS's max_wav_length "
        "of 255995 samples at 22.05 kHz)",
    )
    pad_ms: int = _opt(150, "silence kept before the first and after the last word of a clip, ms")
    vad_threshold: float = _opt(0.5, "Silero VAD speech probability threshold")
    min_speech_ms: int = _opt(250, "VAD speech regions shorter than this are dropped, ms")
    min_silence_ms: int = _opt(300, "a pause at least this long separates two VAD speech regions, ms")
    split_silence_ms: int = _opt(500, "a pause at least this long ends a clip once the clip is min_clip_s long, ms")
    max_inner_silence_ms: int = _opt(1500, "a pause longer than this always ends a clip, ms")
    context_ms: int = _opt(
        600,
        "how far a clip's audio window may reach into the silence around it, ms, so the transcriber sees a word "
        "the VAD missed and the cut can move outside it",
    )


@dataclass(frozen=True)
class TranscribeOptions:
    """How clips are transcribed."""

    __pydantic_config__ = _STRICT_KEYS

    model: str = _opt("tiny.en", "tiny.en, base (offline packages) or a local CTranslate2 model directory")
    language: str = _opt(
        "en",
        "language spoken: en, pt or auto (detected per clip; the dataset's language is then the most common "
        "detection; needs a multilingual model)",
        choices=(*SUPPORTED_LANGUAGES, AUTO_LANGUAGE),
    )
    beam_size: int = _opt(5, "beam width of the decoder")
    temperatures: tuple[float, ...] = _opt(
        (0.0,),
        "decoding temperatures tried in turn, a JSON list; the default greedy [0.0] keeps re-runs byte-identical "
        "(sampling at higher temperatures is random)",
    )
    check_language: bool = _opt(
        True,
        "detect each clip's language (multilingual models only) so the language filter can reject clips in "
        "another language",
    )
    device: str = _opt("auto", "auto (CUDA when the cluster has GPUs), cpu or cuda", choices=DEVICES)
    compute_type: str = _opt("auto", "CTranslate2 compute type; auto is int8 on CPU and float16 on CUDA")


@dataclass(frozen=True)
class FilterOptions:
    """Quality filters; each limit can be switched off with ``None`` (``none`` on the command line)."""

    __pydantic_config__ = _STRICT_KEYS

    min_snr_db: float | None = _opt(15.0, "lowest estimated signal-to-noise ratio, dB")
    max_clipping_ratio: float | None = _opt(0.001, "largest fraction of samples at full scale")
    min_speech_ratio: float | None = _opt(0.4, "lowest fraction of the clip that the VAD marks as speech")
    min_avg_logprob: float | None = _opt(-1.0, "lowest mean token log-probability of the transcript")
    max_no_speech_prob: float | None = _opt(0.6, "highest Whisper no-speech probability")
    min_language_prob: float | None = _opt(
        0.5,
        "a detected language other than the dataset's rejects a clip only when detected with at least this probability",
    )
    min_speaker_similarity: float | None = _opt(0.8, "lowest cosine similarity to the dataset's main speaker")
    reject_duplicates: bool = _opt(True, "reject clips whose normalised text repeats an earlier clip's")
    reject_cut_words: bool = _opt(True, "reject clips whose edge (where the VAD found no pause) falls inside a word")


@dataclass(frozen=True)
class ExportOptions:
    """What the exported dataset looks like."""

    __pydantic_config__ = _STRICT_KEYS

    eval_fraction: float = _opt(
        0.1,
        "share of kept clips in the evaluation split (chosen by a hash of the id, so a clip never changes split "
        "when recordings are added)",
    )
    sample_rate_hz: int = _opt(OUTPUT_SAMPLE_RATE_HZ, "rate of the exported WAVs, Hz")


@dataclass(frozen=True)
class ResourceOptions:
    """Ray resources of each stage.

    Every reservation is explicit: Ray's default of 1 CPU per actor deadlocks small clusters. The
    decode/VAD and analysis actors are mostly idle (transcription takes nine tenths of the work), so
    they reserve small fractions and the transcribers get the rest. One thread per decoding worker and
    several workers use the cores better than one worker with several threads for the short clips of
    a dataset (measured with tiny.en on 2 cores: two 1-thread workers transcribe 1.3-1.7x faster than
    one 2-thread worker).
    """

    __pydantic_config__ = _STRICT_KEYS

    segment_num_cpus: float = _opt(0.25, "CPUs reserved by each decode + VAD actor")
    segment_pool_size: int = _opt(1, "number of decode + VAD actors")
    transcribe_num_cpus: float | None = _opt(
        None,
        "CPUs reserved by each transcriber actor; none shares the cluster's free CPUs (what the other pools "
        "leave) among the transcriber actors, at most one node's CPUs each. On CPU an actor runs one decoding "
        "worker per transcribe_cpu_threads CPUs it reserves (a remaining half CPU or more counts as one)",
    )
    transcribe_cpu_threads: int = _opt(1, "CTranslate2 threads of each decoding worker")
    transcribe_num_gpus: float | None = _opt(
        None, "GPUs per transcriber actor; none means 1 when the cluster has GPUs, else 0"
    )
    transcribe_pool_size: int = _opt(1, "number of transcriber actors (each loads the model once)")
    transcribe_batch_size: int = _opt(
        4,
        "clips per transcriber call (raised to the actor's number of decoding workers when that is larger, so "
        "none of them idles)",
    )
    analyze_num_cpus: float = _opt(0.25, "CPUs reserved by each analysis (metrics + speaker embedding) actor")
    analyze_pool_size: int = _opt(1, "number of analysis actors")
    export_num_cpus: float = _opt(0.5, "CPUs of each WAV-writing task")
    local_num_cpus: int | None = _opt(
        None, "CPUs of the local Ray started when no cluster address is set (none: all cores of the machine)"
    )

    def light_cpus(self) -> float:
        """CPUs held by the decode/VAD and analysis pools together."""
        return self.segment_num_cpus * self.segment_pool_size + self.analyze_num_cpus * self.analyze_pool_size

    def actor_cpus(self, transcribe_num_cpus: float | None = None) -> float:
        """CPUs the actor pools hold together while the pipeline runs.

        Args:
            transcribe_num_cpus: the transcribers' reservation when ``transcribe_num_cpus`` is
                ``None`` (resolved against the cluster); ignored otherwise.
        """
        per_transcriber = self.transcribe_num_cpus if self.transcribe_num_cpus is not None else transcribe_num_cpus
        return self.light_cpus() + (per_transcriber or 0.0) * self.transcribe_pool_size

    def transcribe_workers(self, num_cpus: float) -> int:
        """Decoding workers of a CPU transcriber actor that reserves ``num_cpus``."""
        return max(1, math.floor(num_cpus / self.transcribe_cpu_threads + 0.5))


@dataclass(frozen=True)
class BuildConfig:
    """Everything a dataset build needs besides its inputs and output directory."""

    __pydantic_config__ = _STRICT_KEYS

    segment: SegmentOptions = field(default_factory=SegmentOptions)
    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)
    filters: FilterOptions = field(default_factory=FilterOptions)
    export: ExportOptions = field(default_factory=ExportOptions)
    resources: ResourceOptions = field(default_factory=ResourceOptions)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], base: BuildConfig | None = None) -> BuildConfig:
        """Build the validated configuration from plain data (a JSON object of :meth:`to_dict`'s shape).

        Args:
            options: ``{"segment": {"max_clip_s": 10}, "filters": {...}, ...}``; sections and fields
                left out keep their value in ``base``.
            base: the configuration the options change (the defaults when None).

        Returns:
            The validated configuration.

        Raises:
            InvalidOptionError: a section or field is unknown, a value has the wrong type or is out of
                range; ``field`` and the message name the option, the message says what fits.
        """
        from pydantic import TypeAdapter, ValidationError

        if not isinstance(options, Mapping):
            raise InvalidOptionError("config", f"data-prep options must be a JSON object, not {options!r}")
        merged = (base or cls()).to_dict()
        for section, values in options.items():
            if isinstance(values, Mapping) and isinstance(merged.get(section), dict):
                merged[section] = {**merged[section], **values}
            else:
                merged[section] = values
        try:
            config = TypeAdapter(cls).validate_python(merged)
        except ValidationError as exc:
            raise _option_error(exc.errors()[0]) from None
        return config.validate()

    def validate(self) -> BuildConfig:
        """Check every option's range; return self.

        Raises:
            InvalidOptionError: an option is out of range; the message names it and says what fits.
        """
        _check_segment(self.segment)
        _check_transcribe(self.transcribe)
        _check_filters_and_export(self.filters, self.export)
        _check_resources(self.resources)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (written into ``manifest.json`` and read back by :meth:`from_options`)."""
        return dataclasses.asdict(self)

    def analysis_key(self) -> str:
        """Hash of the options that change a source's analysis (segmentation and transcription).

        A finished source whose marker holds another key is analysed again. Filters and export
        options are left out: they are re-applied to the stored analysis on every run.
        """
        data = {"segment": dataclasses.asdict(self.segment), "transcribe": dataclasses.asdict(self.transcribe)}
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(BuildConfig)}  # type: ignore[misc]


def _option_error(error: Mapping[str, Any]) -> InvalidOptionError:
    """One pydantic error as an :class:`InvalidOptionError` naming the option."""
    loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
    name = ".".join(loc[:2]) or "config"
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        if len(loc) == 1:
            return InvalidOptionError(name, f"unknown data-prep option section {name!r}; known: {sorted(SECTIONS)}")
        known = sorted(f.name for f in dataclasses.fields(SECTIONS[loc[0]]))
        return InvalidOptionError(name, f"unknown {loc[0]} option {loc[1]!r}; known: {known}")
    message = error["msg"][:1].lower() + error["msg"][1:]
    return InvalidOptionError(name, f"invalid data-prep option {name}={error.get('input')!r}: {message}.")


def _require(condition: bool, name: str, value: object, expected: str) -> None:
    if not condition:
        raise InvalidOptionError(name, f"invalid data-prep option {name}={value!r}: expected {expected}.")


def _check_segment(seg: SegmentOptions) -> None:
    _require(seg.min_clip_s > 0, "segment.min_clip_s", seg.min_clip_s, "a positive number of seconds")
    _require(
        seg.max_clip_s > seg.min_clip_s + 2 * seg.pad_ms / 1000,
        "segment.max_clip_s",
        seg.max_clip_s,
        f"more than min_clip_s + 2 * pad ({seg.min_clip_s + 2 * seg.pad_ms / 1000:g} s)",
    )
    _require(0 <= seg.pad_ms <= 1000, "segment.pad_ms", seg.pad_ms, "0 to 1000 ms")
    _require(0 < seg.vad_threshold < 1, "segment.vad_threshold", seg.vad_threshold, "between 0 and 1")
    for name in ("min_speech_ms", "min_silence_ms", "split_silence_ms", "max_inner_silence_ms", "context_ms"):
        _require(getattr(seg, name) >= 0, f"segment.{name}", getattr(seg, name), "0 or more ms")
    _require(
        seg.max_inner_silence_ms >= seg.split_silence_ms,
        "segment.max_inner_silence_ms",
        seg.max_inner_silence_ms,
        f"at least split_silence_ms ({seg.split_silence_ms})",
    )


def _check_transcribe(tr: TranscribeOptions) -> None:
    allowed = (*SUPPORTED_LANGUAGES, AUTO_LANGUAGE)
    _require(tr.language in allowed, "transcribe.language", tr.language, " or ".join(allowed))
    _require(tr.beam_size >= 1, "transcribe.beam_size", tr.beam_size, "1 or more")
    _require(
        bool(tr.temperatures) and all(0 <= t <= 1 for t in tr.temperatures),
        "transcribe.temperatures",
        tr.temperatures,
        "one or more values between 0 and 1",
    )
    _require(tr.device in DEVICES, "transcribe.device", tr.device, "auto, cpu or cuda")
    _require(bool(tr.model), "transcribe.model", tr.model, "tiny.en, base or a CTranslate2 model directory")
    if tr.model.endswith(".en"):
        _require(
            tr.language == "en",
            "transcribe.language",
            tr.language,
            f"'en': model {tr.model!r} is English-only (choose the multilingual model 'base' for other languages)",
        )


def _check_filters_and_export(flt: FilterOptions, exp: ExportOptions) -> None:
    for name, low, high in (
        ("max_clipping_ratio", 0, 1),
        ("min_speech_ratio", 0, 1),
        ("max_no_speech_prob", 0, 1),
        ("min_language_prob", 0, 1),
        ("min_speaker_similarity", -1, 1),
    ):
        value = getattr(flt, name)
        _require(value is None or low <= value <= high, f"filters.{name}", value, f"{low} to {high} or None")
    _require(0 <= exp.eval_fraction < 1, "export.eval_fraction", exp.eval_fraction, "0 or more and less than 1")
    _require(8000 <= exp.sample_rate_hz <= 48000, "export.sample_rate_hz", exp.sample_rate_hz, "8000 to 48000")


def _check_resources(res: ResourceOptions) -> None:
    for name in ("segment_num_cpus", "analyze_num_cpus", "export_num_cpus"):
        _require(getattr(res, name) > 0, f"resources.{name}", getattr(res, name), "a positive (fractional) count")
    _require(
        res.transcribe_num_cpus is None or res.transcribe_num_cpus > 0,
        "resources.transcribe_num_cpus",
        res.transcribe_num_cpus,
        "a positive (fractional) count, or None to share the free CPUs",
    )
    for name in (
        "segment_pool_size",
        "transcribe_pool_size",
        "analyze_pool_size",
        "transcribe_batch_size",
        "transcribe_cpu_threads",
    ):
        _require(getattr(res, name) >= 1, f"resources.{name}", getattr(res, name), "1 or more")
    _require(
        res.transcribe_num_gpus is None or res.transcribe_num_gpus >= 0,
        "resources.transcribe_num_gpus",
        res.transcribe_num_gpus,
        "0 or more",
    )
    _require(
        res.local_num_cpus is None or res.local_num_cpus >= 1, "resources.local_num_cpus", res.local_num_cpus, "1+"
    )


def write_config_file(config: BuildConfig, path: Path) -> Path:
    """Save ``config`` as JSON (:meth:`BuildConfig.to_dict`), atomically; returns ``path``.

    This is how options cross a process boundary (``python -m data_prep build --config FILE``): the
    validated object as JSON, never re-rendered as command-line text.
    """
    from voice_core.storage import atomic_write_json

    atomic_write_json(path, config.to_dict())
    return path


def read_config_file(path: Path) -> BuildConfig:
    """Load a config written by :func:`write_config_file` (or by hand), validated like any other.

    Raises:
        InvalidOptionError: the file is unreadable, not a JSON object, or holds invalid or unknown options.
    """
    from voice_core.storage import read_options_file

    try:
        options = read_options_file(path)
    except InvalidInputError as exc:
        raise InvalidOptionError("config", str(exc)) from None
    return BuildConfig.from_options(options)
