"""Results of one benchmark: statistics, target checks, tables printed as text and written as JSON.

Every benchmark returns the same shape (see :meth:`Result.to_dict`), so the runner can combine
them into one ``summary.md`` without knowing what each one measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """Percentiles of durations given in seconds, in milliseconds (linear interpolation)."""
    if not seconds:
        return {"n": 0}
    ms = np.asarray(seconds, dtype=float) * 1000.0
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "min_ms": round(float(ms.min()), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (NaN when empty)."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def fmt_ms(value: float | None) -> str:
    """Milliseconds for a table cell."""
    return "-" if value is None or value != value else f"{value:,.1f}"


@dataclass
class Table:
    """A table printed to the terminal and rendered into ``summary.md``."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Append a row (cells are turned into strings)."""
        self.rows.append([str(cell) for cell in cells])

    def text(self) -> str:
        """Fixed-width text rendering."""
        widths = [max(len(str(c)), *(len(r[i]) for r in self.rows)) for i, c in enumerate(self.columns)]
        line = "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))
        out = [self.title, line, "  ".join("-" * w for w in widths)]
        out += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in self.rows]
        return "\n".join(out)

    def markdown(self) -> str:
        """GitHub-flavoured Markdown rendering."""
        out = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |"]
        out.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        out += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"title": self.title, "columns": self.columns, "rows": self.rows}


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    """Where the numbers were taken: the load average matters on a shared machine."""
    import ray
    import torch

    return {
        "host_cpus": os.cpu_count(),
        "load_avg_1m_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


@dataclass
class Result:
    """What one benchmark measured, checked and wants to say.

    Args:
        name: the benchmark module's name (also the JSON file's stem).
        quick: whether it ran shortened.
        config: what was run (request counts, texts, app arguments).
    """

    name: str
    quick: bool
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    env: dict[str, Any] = field(default_factory=environment)

    def check(
        self,
        name: str,
        value: float,
        limit: float,
        unit: str,
        *,
        at_most: bool,
        source: str = "issue",
        uncertainty: float | None = None,
    ) -> dict[str, Any]:
        """Record a target check (``value <= limit`` when ``at_most``, else ``value >= limit``).

        A missed target is reported, never raised: the benchmark still succeeds. ``uncertainty`` (same
        unit as ``value``, e.g. a 95% interval half-width) larger than ``limit`` marks the verdict
        inconclusive: the run could not tell a pass from a fail.
        """
        passed = bool(value <= limit) if at_most else bool(value >= limit)
        entry = {
            "name": name,
            "value": round(float(value), 3),
            "target": f"{'≤' if at_most else '≥'} {limit:g}{unit}",
            "unit": unit,
            "passed": passed,
            "source": source,
        }
        if uncertainty is not None:
            entry["uncertainty"] = round(float(uncertainty), 3)
            entry["conclusive"] = bool(uncertainty < abs(limit))
        self.targets.append(entry)
        return entry

    def to_dict(self) -> dict[str, Any]:
        """The JSON written to ``<out_dir>/<name>.json``."""
        return {
            "benchmark": self.name,
            "quick": self.quick,
            "started_at": dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - self.started, 1),
            "environment": {**self.env, "load_avg_1m_end": round(os.getloadavg()[0], 2)},
            "config": self.config,
            "metrics": self.metrics,
            "targets": self.targets,
            "tables": [table.to_dict() for table in self.tables],
            "notes": self.notes,
        }

    def finish(self, out_dir: Path) -> dict[str, Any]:
        """Print the tables and checks, write the JSON and return it."""
        data = self.to_dict()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.name}.json"
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(render_text(data))
        print(f"\nwrote {path}", flush=True)
        return data


def verdict(target: dict[str, Any]) -> str:
    """PASS or FAIL for a check, flagged when the run was too noisy to decide."""
    text = "PASS" if target["passed"] else "FAIL"
    if target.get("conclusive") is False:
        text += f" (inconclusive: ±{target['uncertainty']:g}{target['unit']})"
    return text


def _checks_table(data: dict[str, Any]) -> Table:
    table = Table("Targets", ["check", "value", "target", "result"])
    for target in data["targets"]:
        table.add(target["name"], f"{target['value']:g}{target['unit']}", target["target"], verdict(target))
    return table


def render_text(data: dict[str, Any]) -> str:
    """A result as terminal text: its tables, the target checks and the notes."""
    env = data["environment"]
    head = (
        f"\n== {data['benchmark']} ({'quick' if data['quick'] else 'full'} run, {data['duration_s']} s, "
        f"load avg {env['load_avg_1m_start']} -> {env['load_avg_1m_end']} on {env['host_cpus']} CPUs) =="
    )
    parts = [head]
    parts += [Table(**table).text() for table in data["tables"]]
    if data["targets"]:
        parts.append(_checks_table(data).text())
    parts += [f"note: {note}" for note in data["notes"]]
    return "\n\n".join(parts)


def render_markdown(data: dict[str, Any]) -> str:
    """A result as a Markdown section of ``summary.md``."""
    env = data["environment"]
    parts = [
        f"## {data['benchmark']}",
        f"{'Quick' if data['quick'] else 'Full'} run at {data['started_at']}, {data['duration_s']} s; "
        f"load average {env['load_avg_1m_start']} → {env['load_avg_1m_end']} on {env['host_cpus']} CPUs; "
        f"commit {env.get('git_commit') or 'unknown'}.",
    ]
    if data["targets"]:
        parts.append(_checks_table(data).markdown())
    parts += [Table(**table).markdown() for table in data["tables"]]
    if data["notes"]:
        parts.append("\n".join(f"- {note}" for note in data["notes"]))
    return "\n\n".join(parts)


def cli(name: str, run: Callable[[Path, bool], dict[str, Any]], argv: Sequence[str] | None = None) -> int:
    """Command line of one benchmark module: ``python -m benchmarks.<name> [--quick] [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{name}", description=sys.modules[run.__module__].__doc__
    )
    parser.add_argument("--quick", action="store_true", help="shortened run (seconds, not minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help=f"where {name}.json goes (default: %(default)s)")
    args = parser.parse_args(argv)
    run(args.out, args.quick)
    return 0
