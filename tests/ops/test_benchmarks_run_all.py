"""benchmarks.run_all combines what the shared runner wrote into summary.json (no benchmark is run here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import BENCHMARKS, run_all


def test_run_all_runs_every_benchmark_and_writes_summary_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, *rest = BENCHMARKS
    calls: list[list[str]] = []

    def fake_runner(argv: list[str]) -> int:
        calls.append(argv)
        target = {"name": "speed", "value": 2.0, "target": "≥ 1x", "unit": "x", "passed": True, "source": "issue"}
        result = {"benchmark": first, "quick": True, "targets": [target]}
        (tmp_path / f"{first}.json").write_text(json.dumps(result), encoding="utf-8")
        (tmp_path / "summary.md").write_text("# Benchmark summary\n", encoding="utf-8")
        return 1  # the others "crashed": no JSON of theirs

    monkeypatch.setattr(run_all, "run_benchmarks", fake_runner)
    assert run_all.main(["--quick", "--out", str(tmp_path)]) == 1
    assert calls == [["--quick", "--out", str(tmp_path)]]  # no names: the runner runs all of them

    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["quick"] is True
    assert set(summary["benchmarks"]) == set(BENCHMARKS)
    assert summary["crashed"] == rest
    assert summary["targets"] == [
        {"benchmark": first, "name": "speed", "value": 2.0, "target": "≥ 1x", "unit": "x", "passed": True,
         "source": "issue", "verdict": "PASS"}
    ]  # fmt: skip
    assert (tmp_path / "summary.md").is_file()
