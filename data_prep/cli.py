"""``python -m data_prep build``: parse the command line, call :func:`build_dataset`, print a summary.

Exit status: 0 when the dataset holds at least one clip, 1 when nothing usable was produced, 2 when
the options or inputs are invalid. Works the same locally (a local Ray is started) and under
``ray job submit -- python -m data_prep build ...`` (``RAY_ADDRESS`` is set: the job joins it).

The options come from flags, one per field of :class:`~data_prep.config.BuildConfig` (``--help``
shows each field's description), or from ``--config FILE``: a JSON object of the config's sections
(:func:`~data_prep.config.write_config_file`), which is how the HTTP API starts builds. Both go
through :meth:`BuildConfig.from_options`; the two are never merged.

While it runs, the build's state is kept in ``progress.json`` in the dataset directory (see
:class:`ProgressFile`), so whoever started it (the HTTP API, a person) can follow it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from data_prep.config import SECTIONS, BuildConfig, InvalidOptionError, read_config_file
from data_prep.records import BuildReport
from voice_core.errors import ConfigError, InvalidInputError, ModelError

# Extra spellings of option flags (the flag of every option is ``--`` and its field name with dashes).
_ALIASES: dict[str, tuple[str, ...]] = {"transcribe_batch_size": ("--batch-size",), "language": ("-l",)}


def _value(text: str) -> Any:
    """Parse an option value: none/null, true/false, JSON numbers and lists, else the string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return tuple(value) if isinstance(value, list) else value


def option_fields() -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """Every option of :class:`BuildConfig` as ``(section, field)``; each field name is unique across sections."""
    for section, options in SECTIONS.items():
        for option in dataclasses.fields(options):
            yield section, option


_METAVARS = {"float": "X", "int": "N", "str": "TEXT", "bool": "true|false", "float | None": "X|none"}
_METAVARS |= {"int | None": "N|none", "tuple[float, ...]": "[X, ...]"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_options(build: argparse.ArgumentParser) -> None:
    """One flag per option, its help from the field's description (the default is added)."""
    group = build.add_argument_group("options (each also settable in the --config file)")
    for section, option in option_fields():
        default = "none" if option.default is None else json.dumps(option.default)
        text = f"{option.metadata['help']} ({section}.{option.name}; default {default})"
        kind = str if option.type in ("str", str) else _value
        group.add_argument(
            _flag(option.name),
            *_ALIASES.get(option.name, ()),
            dest=option.name,
            type=kind,
            choices=option.metadata.get("choices"),
            default=argparse.SUPPRESS,
            metavar=_METAVARS.get(str(option.type), "VALUE") if "choices" not in option.metadata else None,
            help=text,
        )


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m data_prep``."""
    main = argparse.ArgumentParser(prog="python -m data_prep", description="Build XTTS fine-tuning datasets.")
    commands = main.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build",
        help="turn recordings of one speaker into an LJSpeech-style dataset",
        description="Turn recordings of one speaker into an LJSpeech-style dataset (wavs/, metadata.csv, "
        "train/eval splits, manifest.json). Running again on the same directory skips finished recordings. "
        "Options come from flags (--language is then required) or from a --config file, never both.",
    )
    build.add_argument(
        "--input",
        "-i",
        nargs="+",
        action="extend",
        required=True,
        metavar="DIR_FILE_GLOB_OR_URL",
        help="recordings: directories, files, globs (quote them) or URLs (URLs need yt-dlp)",
    )
    where = build.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", "-o", type=Path, metavar="DATASET_DIR", help="dataset directory")
    where.add_argument("--name", metavar="NAME", help="dataset name under <storage_root>/datasets/")
    build.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help='read every option from a JSON object shaped like manifest.json\'s config ({"segment": '
        '{"max_clip_s": 10}, ...}; sections and fields left out keep their defaults); not combinable with '
        "option flags or --set",
    )
    _add_options(build)
    build.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="an option by its full name, e.g. filters.min_avg_logprob=-0.8 or segment.split_silence_ms=400 "
        "(repeatable)",
    )
    build.add_argument("--redo", action="store_true", help="analyse every given recording again")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--json", action="store_true", help="print the manifest as JSON instead of tables")
    return main


def options_from_args(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The options given as flags and ``--set``, as :meth:`BuildConfig.from_options` takes them.

    Raises:
        InvalidOptionError: a ``--set`` item is not ``SECTION.FIELD=VALUE``.
    """
    sections: dict[str, dict[str, Any]] = {}
    for section, option in option_fields():
        if hasattr(args, option.name):  # absent unless given (SUPPRESS), so 'none' can switch a filter off
            sections.setdefault(section, {})[option.name] = getattr(args, option.name)
    for item in args.set:
        name, sep, raw = item.partition("=")
        section, dot, field = name.strip().partition(".")
        if not sep or not dot:
            raise InvalidOptionError("set", f"--set {item!r}: write SECTION.FIELD=VALUE, e.g. filters.min_snr_db=10")
        sections.setdefault(section, {})[field] = _value(raw)
    return sections


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """Build the validated configuration from parsed arguments: the ``--config`` file or the flags.

    Raises:
        InvalidOptionError: an option is unknown or out of range, ``--config`` comes with option flags,
            or neither ``--config`` nor ``--language`` is given.
    """
    options = options_from_args(args)
    if args.config is not None:
        if options:
            given = ", ".join(f"{section}.{name}" for section, values in options.items() for name in values)
            raise InvalidOptionError(
                "config",
                f"--config {args.config} was given with option flags ({given}); put every option in the file, "
                "or drop --config and pass flags only",
            )
        return read_config_file(args.config)
    if "language" not in options.get("transcribe", {}):
        raise InvalidOptionError(
            "transcribe.language", "--language is required (or give every option in a JSON file with --config FILE)"
        )
    return BuildConfig.from_options(options)


def _table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(col), *(len(row[i]) for row in cells)) if cells else len(col) for i, col in enumerate(columns)]
    lines = ["  ".join(col.ljust(w) for col, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def summary(report: BuildReport) -> str:
    """The end-of-run summary: a table of sources, then the dataset's numbers."""
    rows = [
        (s.source_id, s.status, f"{s.duration_s:.1f}", s.clips, s.kept, _shorten(s.reason, 80)) for s in report.sources
    ]
    rejected = ", ".join(f"{reason} {count}" for reason, count in report.rejected_by_reason.items()) or "none"
    lines = [
        "",
        _table(["source", "status", "audio s", "clips", "kept", "reason"], rows),
        "",
        _table(
            ["dataset", report.output_dir],
            [
                ("clips kept", f"{report.kept} of {report.clips} (train {report.train}, eval {report.eval})"),
                ("audio kept", f"{report.kept_duration_s:.1f} s of {report.total_duration_s:.1f} s"),
                ("rejected", rejected),
                ("language", report.language),
                ("model", f"{report.model.get('requested')} ({report.model.get('path')})"),
                ("time", f"{report.timings_s.get('total', 0.0):.1f} s"),
            ],
        ),
    ]
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)


class ProgressFile:
    """``progress.json`` of a build, rewritten atomically at each step.

    Fields: ``stage`` (``starting``, ``analysis``, ``filter``, ``export``, then ``done`` or
    ``failed``), ``sources_total``, ``sources_done``, ``clips`` (analysed), ``clips_kept``, ``error``
    (why a failed build failed), ``exit_status``, ``started_at`` and ``updated_at`` (Unix seconds).
    """

    NAME = "progress.json"

    def __init__(self, output_dir: Path) -> None:
        self.path = Path(output_dir) / self.NAME
        now = round(time.time(), 3)
        self.state: dict[str, Any] = {
            "stage": "starting",
            "sources_total": None,
            "sources_done": 0,
            "clips": 0,
            "clips_kept": None,
            "error": None,
            "exit_status": None,
            "started_at": now,
            "updated_at": now,
        }

    def update(self, changes: dict[str, Any]) -> None:
        """Merge ``changes`` into the state and rewrite the file."""
        from voice_core.storage import atomic_write_json

        self.state.update(changes, updated_at=round(time.time(), 3))
        atomic_write_json(self.path, self.state)

    def finish(self, exit_status: int, error: str | None = None, **changes: Any) -> None:
        """Record the end of the build (``done`` for exit status 0, else ``failed``)."""
        stage = "done" if exit_status == 0 else "failed"
        self.update({"stage": stage, "exit_status": exit_status, "error": error, **changes})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from data_prep.pipeline import build_dataset
    from voice_core.settings import Settings
    from voice_core.storage import Storage

    tracker: ProgressFile | None = None
    try:
        config = config_from_args(args)
        settings = Settings.load()
        output = args.output
        if output is None:
            output = Storage.from_settings(settings).ensure().dataset_dir(args.name)
        tracker = ProgressFile(output)
        tracker.update({})
        report = build_dataset(
            args.input,
            output,
            config,
            cache_dir=settings.storage_root / "cache",
            ray_address=settings.ray_address,
            progress=not args.no_progress,
            redo=args.redo,
            on_progress=tracker.update,
        )
    except (ConfigError, InvalidInputError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if tracker is not None:
            tracker.finish(2, str(exc))
        return 2
    except BaseException as exc:
        if tracker is not None:
            tracker.finish(1, f"the build stopped unexpectedly ({type(exc).__name__}: {exc})")
        raise
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else summary(report))
    counts = {"clips": report.clips, "clips_kept": report.kept}
    if not report.usable:
        message = "no usable clips were produced (see the reasons above)"
        print(f"error: {message}", file=sys.stderr)
        tracker.finish(1, message.replace("above", "in manifest.json"), **counts)
        return 1
    tracker.finish(0, **counts)
    return 0
