"""Run benchmarks and write ``results/<name>.json`` plus one ``results/summary.md``.

Each benchmark runs in its own Python process (its own private Ray and in-process model), so one
that crashes does not take the others with it. Missed targets never fail the run; a crash does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from benchmarks import BENCHMARKS
from benchmarks.report import REPO_ROOT, RESULTS_DIR, render_markdown, verdict


def _summary(results: dict[str, dict | None], quick: bool) -> str:
    lines = [
        "# Benchmark summary",
        "",
        f"Generated {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} "
        f"({'quick' if quick else 'full'} run). Targets are from the serving issue; a FAIL is reported, "
        "not raised. Ratios compare paths measured within one run on the same machine.",
        "",
        "| benchmark | check | value | target | result |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, data in results.items():
        if data is None:
            lines.append(f"| {name} | (benchmark crashed: see its output) | - | - | ERROR |")
            continue
        for target in data["targets"]:
            value = f"{target['value']:g}{target['unit']}"
            lines.append(f"| {name} | {target['name']} | {value} | {target['target']} | {verdict(target)} |")
    for data in results.values():
        if data is not None:
            lines += ["", render_markdown(data)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen benchmarks one after another, write the summary."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="name", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--quick", action="store_true", help="shortened runs (seconds, not minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory (default: %(default)s)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from: {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict | None] = {}
    for name in names:
        print(f"\n### {name}: {BENCHMARKS[name]}", flush=True)
        path = out / f"{name}.json"
        path.unlink(missing_ok=True)
        command = [sys.executable, "-m", f"benchmarks.{name}", "--out", str(out), *(["--quick"] if args.quick else [])]
        code = subprocess.run(command, cwd=REPO_ROOT, check=False).returncode
        results[name] = json.loads(path.read_text(encoding="utf-8")) if code == 0 and path.is_file() else None
        if results[name] is None:
            print(f"{name} failed (exit code {code})", file=sys.stderr, flush=True)
    summary = out / "summary.md"
    summary.write_text(_summary(results, args.quick), encoding="utf-8")
    print(f"\nwrote {summary}")
    return 0 if all(data is not None for data in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
