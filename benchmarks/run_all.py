"""Run every benchmark and write one report: ``summary.md`` and ``summary.json`` in the results directory.

``python -m benchmarks.run_all [--quick] [--out DIR]``. The runner of ``python -m benchmarks`` does the
work (each benchmark in its own process, ``<name>.json`` each, ``summary.md``); this adds
``summary.json``: every benchmark's result (``null`` for one that crashed) and all target checks in one
list. Exit status 1 when a benchmark crashed; missed targets are reported, not raised.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import BENCHMARKS
from benchmarks.__main__ import main as run_benchmarks
from benchmarks.report import RESULTS_DIR, verdict


def summary(results: dict[str, dict[str, Any] | None], quick: bool) -> dict[str, Any]:
    """The combined report of one run."""
    checks = [
        {"benchmark": name, **target, "verdict": verdict(target)}
        for name, data in results.items()
        if data is not None
        for target in data["targets"]
    ]
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "crashed": [name for name, data in results.items() if data is None],
        "targets": checks,
        "benchmarks": results,
    }


def main(argv: list[str] | None = None) -> int:
    """Run all benchmarks through the shared runner, then combine their JSON into ``summary.json``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shortened runs (seconds, not minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory (default: %(default)s)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    code = run_benchmarks([*(["--quick"] if args.quick else []), "--out", str(out)])
    # The runner deletes each <name>.json before running it, so a file here is from this run.
    results = {
        name: json.loads(path.read_text(encoding="utf-8")) if (path := out / f"{name}.json").is_file() else None
        for name in BENCHMARKS
    }
    target = out / "summary.json"
    target.write_text(json.dumps(summary(results, args.quick), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {target}")
    return code


if __name__ == "__main__":
    sys.exit(main())
