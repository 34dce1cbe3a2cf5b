"""What the pipeline produces: one record per source recording and one per clip, plus the report.

Clip records hold the analysis (times, transcript, measurements, speaker embedding); the filter
decision (``reasons``, ``kept``) is recomputed from them on every run, so changing a threshold
needs no new transcription. Everything here is JSON-ready and rounded, so equal inputs give equal
files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Self

# Source statuses.
PROCESSED = "processed"  # analysed in this run
SKIPPED = "skipped"  # analysed by an earlier run (its .completed marker matched)
UNREADABLE = "error"  # could not be read or decoded (the word stored in manifests since the first release)
NO_SPEECH = "no_speech"  # decoded, but the VAD found no speech
UNSUPPORTED = "unsupported"  # not an audio file (by extension), never opened


def clip_id(source_id: str, index: int) -> str:
    """The clip id ``<source-stem>-<index:05d>``."""
    return f"{source_id}-{index:05d}"


class _Record:
    """The JSON round trip of the record dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict` (derived and unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass
class ClipRecord(_Record):
    """One clip: where it lies in its source, what was said, and how good it is.

    Attributes:
        id: ``<source_id>-<index:05d>``.
        source_id: id of the source recording.
        index: position of the clip in its source (gaps remain where planned clips were dropped).
        start_s: start in the source, seconds.
        end_s: end in the source, seconds.
        text: the transcript as the recogniser wrote it.
        normalized_text: the transcript with numbers, dates, currency and abbreviations spelled out.
        language: the detected language, ``""`` when the model cannot detect (English-only models).
        language_prob: probability of the detected language (0 when not detected).
        avg_logprob: mean token log-probability of the transcript.
        no_speech_prob: Whisper's probability that the clip holds no speech.
        snr_db: estimated signal-to-noise ratio.
        clipping_ratio: fraction of samples at full scale.
        speech_ratio: fraction of the clip the VAD marks as speech.
        peak: largest absolute sample value.
        cut_in_word: a clip edge without a pause falls inside a word.
        words: ``[start_s, end_s, word, probability]`` in source time.
        embedding: speaker embedding (unit length), empty when not computed.
        reasons: why the clip is rejected (empty: kept); recomputed each run.
        speaker_similarity: cosine similarity to the dataset's main speaker; recomputed each run.
    """

    id: str
    source_id: str
    index: int
    start_s: float
    end_s: float
    text: str = ""
    normalized_text: str = ""
    language: str = ""
    language_prob: float = 0.0
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    snr_db: float = 0.0
    clipping_ratio: float = 0.0
    speech_ratio: float = 0.0
    peak: float = 0.0
    cut_in_word: bool = False
    words: list[list[Any]] = field(default_factory=list)
    embedding: list[float] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    speaker_similarity: float | None = None

    @property
    def duration_s(self) -> float:
        """Length of the clip in seconds."""
        return self.end_s - self.start_s

    @property
    def kept(self) -> bool:
        """Whether the clip passed every filter."""
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the derived duration."""
        data = super().to_dict()
        data["duration_s"] = round(self.duration_s, 4)
        return data


@dataclass
class SourceRecord(_Record):
    """One input recording.

    Attributes:
        source_id: sanitised stem of the file (made unique), the prefix of its clip ids.
        path: absolute path of the file (or the URL it was fetched from, in ``origin``).
        status: ``processed``, ``skipped``, ``error``, ``no_speech`` or ``unsupported``.
        reason: why a source gave no clips (empty otherwise).
        sha256: hash of the file's bytes (a changed file is analysed again).
        duration_s: decoded length in seconds (0 when unknown).
        clips: number of planned clips.
        kept: number of clips kept after the filters.
        origin: the URL a downloaded source came from.
    """

    source_id: str
    path: str
    status: str = PROCESSED
    reason: str = ""
    sha256: str = ""
    duration_s: float = 0.0
    clips: int = 0
    kept: int = 0
    origin: str = ""


@dataclass
class BuildReport:
    """The outcome of a build, written as ``manifest.json`` and shown as the CLI's summary.

    Attributes:
        output_dir: the dataset directory.
        language: the dataset's language.
        model: what the transcriber used (``requested``, ``used``, ``path``, ``detail``).
        sources: one record per input.
        clips: total planned clips of all sources (new and earlier).
        kept: clips in ``metadata.csv``.
        train: clips in the training split.
        eval: clips in the evaluation split.
        total_duration_s: decoded audio of all usable sources.
        processed_duration_s: audio analysed by this run (the rest was analysed earlier).
        kept_duration_s: audio in the kept clips.
        rejected_by_reason: clips per first failing filter.
        timings_s: wall seconds of each phase and summed busy seconds of each stage.
        config: the options used.
        placement: how this run's transcribers ran (device, CPUs and GPUs per actor, decoding
            workers and threads); empty when nothing was analysed.
        notes: remarks worth showing (language detection unavailable, missing sources, ...).
    """

    output_dir: str
    language: str
    model: dict[str, str] = field(default_factory=dict)
    sources: list[SourceRecord] = field(default_factory=list)
    clips: int = 0
    kept: int = 0
    train: int = 0
    eval: int = 0
    total_duration_s: float = 0.0
    processed_duration_s: float = 0.0
    kept_duration_s: float = 0.0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    placement: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Whether the dataset holds at least one clip."""
        return self.kept > 0

    def source_counts(self) -> dict[str, int]:
        """Sources per status."""
        counts: dict[str, int] = {}
        for source in self.sources:
            counts[source.status] = counts.get(source.status, 0) + 1
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the manifest)."""
        data = dataclasses.asdict(self)
        data["sources"] = [source.to_dict() for source in self.sources]
        data["source_counts"] = self.source_counts()
        for key in ("total_duration_s", "processed_duration_s", "kept_duration_s"):
            data[key] = round(data[key], 3)
        data["timings_s"] = {key: round(value, 3) for key, value in self.timings_s.items()}
        return data
