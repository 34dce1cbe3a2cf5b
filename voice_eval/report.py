"""A scored set summarised: per-metric means with 95 % confidence intervals, flag counts, a table.

Intervals are Student t-intervals of the mean, ``mean ± t(0.975, n-1) · s / √n`` with ``s`` the
sample standard deviation: they assume roughly normal clip scores (reasonable for means of 20+ clips;
WER is bounded below by 0, so small sets of near-perfect clips give intervals that dip under it).
A metric with one value has no interval (``null``); MOS, which is ``null`` on every clip until a
predictor is available, has ``n = 0``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voice_eval.pipeline import ScoredClip

METRICS = ("wer", "cer", "similarity", "mos")
CONFIDENCE = 0.95
REPORT_JSON = "report.json"
REPORT_TABLE = "report.txt"


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean of ``values`` with its t-interval.

    Args:
        values: one number per clip.
        confidence: coverage of the interval.

    Returns:
        ``n``, ``mean``, ``std`` (sample, ``ddof=1``), ``ci_low``, ``ci_high`` (``None`` where undefined).
    """
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}
    mean = math.fsum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    from scipy.stats import t

    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def summarize(clips: Sequence[ScoredClip], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of a scored set.

    Args:
        clips: the scored clips (those with an error count under ``errors`` only).
        meta: what was run (ASR model, path, timings...), copied under ``run``.

    Returns:
        ``clips``, ``scored``, ``errors``, ``metrics`` (per metric :func:`mean_ci`), ``flags``
        (clips per flag), ``confidence``, ``interval`` and ``run``.
    """
    scored = [clip.score for clip in clips if clip.score is not None]
    metrics = {}
    for name in METRICS:
        values = [float(getattr(score, name)) for score in scored if getattr(score, name) is not None]
        metrics[name] = mean_ci(values)
    flags = Counter(flag for score in scored for flag in score.flags)
    return {
        "clips": len(clips),
        "scored": len(scored),
        "errors": len(clips) - len(scored),
        "metrics": metrics,
        "flags": dict(sorted(flags.items())),
        "confidence": CONFIDENCE,
        "interval": "Student t-interval of the mean",
        "run": dict(meta or {}),
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_table(summary: dict[str, Any]) -> str:
    """The summary as a fixed-width text table."""
    lines = [
        f"{summary['scored']} of {summary['clips']} clips scored ({summary['errors']} could not be)",
        "",
        f"{'metric':<12}{'n':>5}{'mean':>9}{'95% CI':>20}",
    ]
    for name, stats in summary["metrics"].items():
        ci = "-" if stats["ci_low"] is None else f"[{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"
        lines.append(f"{name:<12}{stats['n']:>5}{_cell(stats['mean']):>9}{ci:>20}")
    lines += ["", "flags: " + (", ".join(f"{k} {v}" for k, v in summary["flags"].items()) or "none")]
    return "\n".join(lines)


def write_report(out_dir: str | Path, clips: Sequence[ScoredClip], summary: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` (summary and per-clip records) and ``report.txt`` (the table) into ``out_dir``.

    Returns:
        The two paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {"summary": summary, "clips": [clip.to_dict() for clip in clips]}
    json_path, table_path = out / REPORT_JSON, out / REPORT_TABLE
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table_path.write_text(render_table(summary) + "\n", encoding="utf-8")
    return json_path, table_path
