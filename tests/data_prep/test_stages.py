"""The pure stages of a build: planning which sources to analyse, merging records, validating the export."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_prep.config import BuildConfig
from data_prep.export import CompletedSource, validate_clips
from data_prep.ingest import SourceFile
from data_prep.pipeline import dataset_language, merge_records, plan_sources
from data_prep.records import SKIPPED, UNREADABLE, ClipRecord, SourceRecord, clip_id

KEY = BuildConfig().analysis_key()


def _source(source_id: str, sha256: str = "abc") -> SourceFile:
    return SourceFile(source_id, Path(f"/in/{source_id}.wav"), sha256, 3.0)


def _clip(source_id: str, index: int, language: str = "") -> ClipRecord:
    return ClipRecord(clip_id(source_id, index), source_id, index, 0.0, 2.0, text="hi", language=language)


def _completed(source_id: str, key: str = KEY, sha256: str = "abc") -> CompletedSource:
    record = SourceRecord(source_id, f"/in/{source_id}.wav", sha256=sha256, reason="")
    return CompletedSource(record, [_clip(source_id, 1), _clip(source_id, 2)], key)


def test_plan_analyses_new_changed_and_reconfigured_sources_only() -> None:
    completed = {
        "same": _completed("same"),
        "changed": _completed("changed", sha256="old"),
        "other_key": _completed("other_key", key="other"),
        "gone": _completed("gone", key="other"),  # not among this run's inputs
    }
    sources = [_source("same"), _source("changed"), _source("other_key"), _source("new")]
    plan = plan_sources(sources, completed, KEY)
    assert [s.source_id for s in plan.todo] == ["changed", "other_key", "new"]
    assert (plan.skipped, plan.earlier_clips) == (1, 4)  # 'same' and 'gone' keep their two clips each
    assert plan.notes == ["sources analysed with other segmentation/transcription options kept as they are: ['gone']"]
    assert [s.source_id for s in plan_sources(sources, completed, KEY, redo=True).todo] == [
        s.source_id for s in sources
    ]


def test_merge_keeps_earlier_sources_as_skipped_and_drops_failed_new_ones() -> None:
    completed = {"old": _completed("old"), "redone": _completed("redone")}
    new = {
        "redone": (SourceRecord("redone", "/in/redone.wav"), [_clip("redone", 1)]),
        "broken": (SourceRecord("broken", "/in/broken.wav", status=UNREADABLE, reason="cannot decode"), []),
    }
    records, clips = merge_records(completed, new)
    assert sorted(records) == ["old", "redone"]
    assert records["old"].status == SKIPPED and records["old"].reason == "analysed by an earlier run"
    assert completed["old"].record.status != SKIPPED  # the earlier record is copied, not changed
    assert [clip.id for clip in clips] == ["old-00001", "old-00002", "redone-00001"]


def test_dataset_language_is_the_most_common_detection_with_auto() -> None:
    auto = BuildConfig.from_options({"transcribe": {"model": "base", "language": "auto"}})
    clips = [_clip("a", 1, "pt"), _clip("a", 2, "pt"), _clip("a", 3, "en")]
    assert dataset_language(auto, clips) == "pt" and dataset_language(auto, []) == "en"
    assert dataset_language(BuildConfig(), clips) == "en"


@pytest.mark.parametrize(
    ("clips", "message"),
    [
        ([_clip("a", 1), _clip("a", 1)], "appears twice"),
        ([ClipRecord("a|b", "a", 1, 0.0, 1.0)], "cannot name a WAV"),
        ([ClipRecord("a-00001", "a", 1, 2.0, 2.0)], "its end must follow its start"),
    ],
)
def test_export_validation_names_the_bad_clip(clips: list[ClipRecord], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_clips(clips)
    validate_clips([_clip("a", 1), _clip("a", 2)])
