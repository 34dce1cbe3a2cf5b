"""Quality filters: per-clip checks, then the dataset-level speaker and duplicate checks.

Every rejection has a reason from :data:`REASONS`; a clip keeps all the reasons that apply, in that
order, and the report counts each rejected clip under its first. The decision is a pure function
of the stored analysis and the options, so it is recomputed on every run.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from data_prep.config import FilterOptions, SegmentOptions
from data_prep.records import ClipRecord
from data_prep.speaker import main_speaker, similarities

REASONS: tuple[str, ...] = (
    "empty_text",
    "too_short",
    "too_long",
    "no_speech",
    "low_confidence",
    "low_snr",
    "clipping",
    "low_speech_ratio",
    "language_mismatch",
    "cut_in_word",
    "speaker_mismatch",
    "duplicate_text",
    "source_missing",
)

# The speaker check needs enough clips for "the main speaker" to mean something.
MIN_CLIPS_FOR_SPEAKER_CHECK = 3


def clip_reasons(clip: ClipRecord, segment: SegmentOptions, options: FilterOptions, language: str) -> list[str]:
    """Reasons to reject one clip, judged on its own.

    Args:
        clip: the analysed clip.
        segment: segmentation options (the duration window).
        options: filter thresholds.
        language: the dataset's language (``en``, ``pt``).

    Returns:
        Reasons in :data:`REASONS` order; empty when the clip passes.
    """
    reasons = []
    if not clip.normalized_text.strip() and not clip.text.strip():
        reasons.append("empty_text")
    # A millisecond of slack: cut points sit on 10 ms frame boundaries.
    if clip.duration_s < segment.min_clip_s - 1e-3:
        reasons.append("too_short")
    if clip.duration_s > segment.max_clip_s + 1e-3:
        reasons.append("too_long")
    if options.max_no_speech_prob is not None and clip.no_speech_prob > options.max_no_speech_prob:
        reasons.append("no_speech")
    if options.min_avg_logprob is not None and clip.avg_logprob < options.min_avg_logprob:
        reasons.append("low_confidence")
    if options.min_snr_db is not None and clip.snr_db < options.min_snr_db:
        reasons.append("low_snr")
    if options.max_clipping_ratio is not None and clip.clipping_ratio > options.max_clipping_ratio:
        reasons.append("clipping")
    if options.min_speech_ratio is not None and clip.speech_ratio < options.min_speech_ratio:
        reasons.append("low_speech_ratio")
    if (
        options.min_language_prob is not None
        and clip.language
        and clip.language != language
        and clip.language_prob >= options.min_language_prob
    ):
        reasons.append("language_mismatch")
    if options.reject_cut_words and clip.cut_in_word:
        reasons.append("cut_in_word")
    return reasons


def text_key(text: str) -> str:
    """Comparison key of a transcript: case-folded, punctuation removed, single-spaced."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", folded).split())


def apply_filters(
    clips: Sequence[ClipRecord], segment: SegmentOptions, options: FilterOptions, language: str
) -> list[str]:
    """Decide every clip: sets ``reasons`` and ``speaker_similarity`` in place.

    Per-clip checks run first. The main speaker is then estimated from the clips that passed them
    and each of those is compared with it; finally, among clips still kept (in id order), a
    transcript repeating an earlier one is rejected.

    Args:
        clips: all clips of the dataset (earlier sources included), any order.
        segment: segmentation options.
        options: filter thresholds.
        language: the dataset's language.

    Returns:
        Notes for the report (for example, why the speaker check was skipped).
    """
    notes = []
    ordered = sorted(clips, key=lambda clip: clip.id)
    for clip in ordered:
        clip.reasons = clip_reasons(clip, segment, options, language)
        clip.speaker_similarity = None
    if options.min_speaker_similarity is not None:
        candidates = [clip for clip in ordered if not clip.reasons and clip.embedding]
        if len(candidates) >= MIN_CLIPS_FOR_SPEAKER_CHECK:
            vectors = np.asarray([clip.embedding for clip in candidates], dtype=np.float64)
            scores = similarities(vectors, main_speaker(vectors))
            for clip, score in zip(candidates, scores, strict=True):
                clip.speaker_similarity = round(float(score), 4)
                if score < options.min_speaker_similarity:
                    clip.reasons.append("speaker_mismatch")
        else:
            notes.append(
                f"speaker check skipped: {len(candidates)} clip(s) passed the other filters with embeddings, "
                f"it needs {MIN_CLIPS_FOR_SPEAKER_CHECK}"
            )
    if options.reject_duplicates:
        seen: set[str] = set()
        for clip in ordered:
            if clip.reasons:
                continue
            key = text_key(clip.normalized_text or clip.text)
            if key in seen:
                clip.reasons.append("duplicate_text")
            seen.add(key)
    for clip in ordered:
        clip.reasons.sort(key=REASONS.index)
    return notes


def count_reasons(clips: Sequence[ClipRecord]) -> dict[str, int]:
    """Rejected clips per first reason, in :data:`REASONS` order (reasons with no clip left out)."""
    counts = {reason: 0 for reason in REASONS}
    for clip in clips:
        if clip.reasons:
            counts[clip.reasons[0]] += 1
    return {reason: count for reason, count in counts.items() if count}
