"""The set report: t-interval means on known numbers, flag counts, report.json and the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voice_eval.pipeline import ScoredClip
from voice_eval.report import mean_ci, render_table, summarize, write_report
from voice_eval.score import ClipScore
from voice_eval.signal import SignalReport


def test_t_interval_on_known_numbers() -> None:
    # mean 3, sample sd sqrt(2.5) = 1.5811, t(0.975, 4) = 2.7764: half-width 2.7764 * 1.5811 / sqrt(5) = 1.9632
    stats = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert stats["n"] == 5
    assert stats["mean"] == pytest.approx(3.0)
    assert stats["std"] == pytest.approx(1.5811388, rel=1e-6)
    assert stats["ci_low"] == pytest.approx(3.0 - 1.9632, abs=1e-3)
    assert stats["ci_high"] == pytest.approx(3.0 + 1.9632, abs=1e-3)
    # A wrong mean lies outside the interval; the right one inside.
    assert not stats["ci_low"] <= 5.5 <= stats["ci_high"]
    assert stats["ci_low"] <= 3.0 <= stats["ci_high"]


def test_interval_narrows_with_more_clips_and_is_undefined_for_one() -> None:
    few, many = mean_ci([0.1, 0.3] * 3), mean_ci([0.1, 0.3] * 30)
    assert few["mean"] == pytest.approx(many["mean"]) == pytest.approx(0.2)
    assert many["ci_high"] - many["ci_low"] < few["ci_high"] - few["ci_low"]
    assert mean_ci([0.4]) == {"n": 1, "mean": 0.4, "std": None, "ci_low": None, "ci_high": None}
    assert mean_ci([])["mean"] is None


def _clip(wer: float, similarity: float, flags: list[str]) -> ScoredClip:
    signal = SignalReport(2.0, 1.5, 0.2, 0.3, 0.8, 0.0, 3.0, (1.5, 5.0), 1.4, 1.07, [])
    score = ClipScore(wer, wer / 2, similarity, None, flags, "text", signal, {"asr": "x"})
    return ScoredClip(f"c{wer}", "text", "en", score)


def test_summary_counts_flags_errors_and_writes_the_report(tmp_path: Path) -> None:
    clips = [
        _clip(0.0, 0.9, []),
        _clip(0.2, 0.8, ["truncated"]),
        _clip(0.7, 0.7, ["truncated", "unintelligible"]),
        ScoredClip("bad", "text", "en", None, "clip cannot be decoded"),
    ]
    summary = summarize(clips, {"asr_model": "tiny.en"})
    assert (summary["clips"], summary["scored"], summary["errors"]) == (4, 3, 1)
    assert summary["flags"] == {"truncated": 2, "unintelligible": 1}
    assert summary["metrics"]["wer"]["mean"] == pytest.approx(0.3)
    assert summary["metrics"]["similarity"]["mean"] == pytest.approx(0.8)
    assert summary["metrics"]["mos"]["n"] == 0
    json_path, table_path = write_report(tmp_path / "out", clips, summary)
    data = json.loads(json_path.read_text())
    assert data["summary"]["run"] == {"asr_model": "tiny.en"}
    assert [c["id"] for c in data["clips"]] == ["c0.0", "c0.2", "c0.7", "bad"]
    assert data["clips"][3]["error"] == "clip cannot be decoded"
    table = table_path.read_text()
    assert table == render_table(summary) + "\n"
    assert "3 of 4 clips scored" in table and "truncated 2" in table
    assert "0.300" in table.splitlines()[3]
