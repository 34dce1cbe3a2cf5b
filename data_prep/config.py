"""Options of the data-prep pipeline: plain dataclasses with units in the field names.

Each concern has its own options class (segmentation, transcription, filters, export, resources);
:class:`BuildConfig` groups them and :meth:`BuildConfig.validate` checks them all at once, so a bad
value stops the run before any work starts with a message naming the option and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from voice_core.errors import ConfigError

# Languages the text normaliser knows; Whisper language codes.
SUPPORTED_LANGUAGES: tuple[str, ...] = ("en", "pt")
AUTO_LANGUAGE = "auto"
OUTPUT_SAMPLE_RATE_HZ = 22_050
ANALYSIS_SAMPLE_RATE_HZ = 16_000


@dataclass(frozen=True)
class SegmentOptions:
    """How recordings are cut into clips.

    Attributes:
        min_clip_s: shortest clip kept (the duration filter rejects shorter ones).
        max_clip_s: longest clip; regions are grouped so a clip never exceeds it (11.6 s is XTTS's
            ``max_wav_length`` of 255995 samples at 22.05 kHz).
        pad_ms: silence kept before the first and after the last word of a clip.
        vad_threshold: Silero VAD speech probability threshold.
        min_speech_ms: VAD speech regions shorter than this are dropped.
        min_silence_ms: a pause at least this long separates two VAD speech regions.
        split_silence_ms: a pause at least this long ends a clip once the clip is ``min_clip_s`` long.
        max_inner_silence_ms: a pause longer than this always ends a clip.
        context_ms: how far a clip's audio window may reach into the silence around it, so the
            transcriber sees a word the VAD missed and the cut can move outside it.
    """

    min_clip_s: float = 1.0
    max_clip_s: float = 11.6
    pad_ms: int = 150
    vad_threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 300
    split_silence_ms: int = 500
    max_inner_silence_ms: int = 1500
    context_ms: int = 600


@dataclass(frozen=True)
class TranscribeOptions:
    """How clips are transcribed.

    Attributes:
        model: ``tiny.en``, ``base`` (offline packages) or a local CTranslate2 model directory.
        language: ``en``, ``pt`` or ``auto`` (detected per clip; the dataset's language is then the
            most common detection).
        beam_size: beam width of the decoder.
        temperatures: decoding temperatures tried in turn; the default greedy ``(0.0,)`` keeps
            re-runs byte-identical (sampling at higher temperatures is random).
        check_language: detect each clip's language (multilingual models only) so the language
            filter can reject clips in another language.
        device: ``auto`` (CUDA when the cluster has GPUs), ``cpu`` or ``cuda``.
        compute_type: CTranslate2 compute type; ``auto`` is int8 on CPU and float16 on CUDA.
    """

    model: str = "tiny.en"
    language: str = "en"
    beam_size: int = 5
    temperatures: tuple[float, ...] = (0.0,)
    check_language: bool = True
    device: str = "auto"
    compute_type: str = "auto"


@dataclass(frozen=True)
class FilterOptions:
    """Quality filters; each one can be switched off by setting its limit to ``None``.

    Attributes:
        min_snr_db: lowest estimated signal-to-noise ratio.
        max_clipping_ratio: largest fraction of samples at full scale.
        min_speech_ratio: lowest fraction of the clip that the VAD marks as speech.
        min_avg_logprob: lowest mean token log-probability of the transcript.
        max_no_speech_prob: highest Whisper no-speech probability.
        min_language_prob: a detected language other than the dataset's rejects a clip only when
            detected with at least this probability.
        min_speaker_similarity: lowest cosine similarity to the dataset's main speaker.
        reject_duplicates: reject clips whose normalised text repeats an earlier clip's.
        reject_cut_words: reject clips whose edge (where the VAD found no pause) falls inside a word.
    """

    min_snr_db: float | None = 15.0
    max_clipping_ratio: float | None = 0.001
    min_speech_ratio: float | None = 0.4
    min_avg_logprob: float | None = -1.0
    max_no_speech_prob: float | None = 0.6
    min_language_prob: float | None = 0.5
    min_speaker_similarity: float | None = 0.8
    reject_duplicates: bool = True
    reject_cut_words: bool = True


@dataclass(frozen=True)
class ExportOptions:
    """What the exported dataset looks like.

    Attributes:
        eval_fraction: share of kept clips in the evaluation split (chosen by a hash of the id, so a
            clip never changes split when recordings are added).
        sample_rate_hz: rate of the exported WAVs.
    """

    eval_fraction: float = 0.1
    sample_rate_hz: int = OUTPUT_SAMPLE_RATE_HZ


@dataclass(frozen=True)
class ResourceOptions:
    """Ray resources of each stage.

    Every reservation is explicit: Ray's default of 1 CPU per actor deadlocks small clusters. The
    decode/VAD and analysis actors are mostly idle (transcription takes nine tenths of the work), so
    they reserve small fractions and the transcribers get the rest.

    Attributes:
        segment_num_cpus: CPUs reserved by each decode + VAD actor.
        segment_pool_size: number of decode + VAD actors.
        transcribe_num_cpus: CPUs reserved by each transcriber actor; ``None`` shares the cluster's
            free CPUs (what the other pools leave) among the transcriber actors, at most one node's
            CPUs each. On CPU an actor runs one decoding worker per ``transcribe_cpu_threads`` CPUs
            it reserves (a remaining half CPU or more counts as one), and transcribes that many
            clips at once.
        transcribe_cpu_threads: CTranslate2 threads of each decoding worker. One thread per worker
            and several workers use the cores better than one worker with several threads for the
            short clips of a dataset (measured with tiny.en on 2 cores: two 1-thread workers transcribe
            1.3-1.7x faster than one 2-thread worker).
        transcribe_num_gpus: GPUs per transcriber actor; ``None`` means 1 when the cluster has GPUs,
            else 0.
        transcribe_pool_size: number of transcriber actors (each loads the model once).
        transcribe_batch_size: clips per transcriber call (raised to the actor's number of decoding
            workers when that is larger, so none of them idles).
        analyze_num_cpus: CPUs reserved by each analysis (metrics + speaker embedding) actor.
        analyze_pool_size: number of analysis actors.
        export_num_cpus: CPUs of each WAV-writing task.
        local_num_cpus: CPUs of the local Ray started when no cluster address is set (``None``:
            all cores of the machine).
    """

    segment_num_cpus: float = 0.25
    segment_pool_size: int = 1
    transcribe_num_cpus: float | None = None
    transcribe_cpu_threads: int = 1
    transcribe_num_gpus: float | None = None
    transcribe_pool_size: int = 1
    transcribe_batch_size: int = 4
    analyze_num_cpus: float = 0.25
    analyze_pool_size: int = 1
    export_num_cpus: float = 0.5
    local_num_cpus: int | None = None

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

    segment: SegmentOptions = field(default_factory=SegmentOptions)
    transcribe: TranscribeOptions = field(default_factory=TranscribeOptions)
    filters: FilterOptions = field(default_factory=FilterOptions)
    export: ExportOptions = field(default_factory=ExportOptions)
    resources: ResourceOptions = field(default_factory=ResourceOptions)

    def validate(self) -> BuildConfig:
        """Check every option; return self.

        Raises:
            ConfigError: an option is out of range; the message names it and says what fits.
        """
        seg, tr, flt, exp, res = self.segment, self.transcribe, self.filters, self.export, self.resources
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
        allowed = (*SUPPORTED_LANGUAGES, AUTO_LANGUAGE)
        _require(tr.language in allowed, "language", tr.language, " or ".join(allowed))
        _require(tr.beam_size >= 1, "transcribe.beam_size", tr.beam_size, "1 or more")
        _require(
            bool(tr.temperatures) and all(0 <= t <= 1 for t in tr.temperatures),
            "transcribe.temperatures",
            tr.temperatures,
            "one or more values between 0 and 1",
        )
        _require(tr.device in ("auto", "cpu", "cuda"), "transcribe.device", tr.device, "auto, cpu or cuda")
        _require(bool(tr.model), "model", tr.model, "tiny.en, base or a CTranslate2 model directory")
        if tr.model.endswith(".en"):
            _require(
                tr.language == "en",
                "language",
                tr.language,
                f"'en': model {tr.model!r} is English-only (use --model base for other languages)",
            )
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
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (written into ``manifest.json``)."""
        return dataclasses.asdict(self)

    def analysis_key(self) -> str:
        """Hash of the options that change a source's analysis (segmentation and transcription).

        A finished source whose marker holds another key is analysed again. Filters and export
        options are left out: they are re-applied to the stored analysis on every run.
        """
        data = {"segment": dataclasses.asdict(self.segment), "transcribe": dataclasses.asdict(self.transcribe)}
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _require(condition: bool, name: str, value: object, expected: str) -> None:
    if not condition:
        raise ConfigError(f"invalid data-prep option {name}={value!r}: expected {expected}.")


def replace_options(config: BuildConfig, **sections: dict[str, Any]) -> BuildConfig:
    """Return a copy of ``config`` with fields of its sections replaced.

    Args:
        config: the starting configuration.
        **sections: ``segment={...}``, ``filters={...}`` and so on; keys are field names.

    Returns:
        The new configuration (not yet validated).

    Raises:
        ConfigError: a section or field name is unknown.
    """
    changes = {}
    for section, values in sections.items():
        if section not in {f.name for f in dataclasses.fields(BuildConfig)}:
            raise ConfigError(f"unknown data-prep option section {section!r}")
        current = getattr(config, section)
        known = {f.name for f in dataclasses.fields(current)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown {section} option(s) {unknown}; known: {sorted(known)}")
        changes[section] = dataclasses.replace(current, **values)
    return dataclasses.replace(config, **changes)
