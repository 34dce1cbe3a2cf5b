"""``python -m voice_core``: maintenance commands for models and settings."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from voice_core.errors import VoiceError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m voice_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tiny = sub.add_parser("make-tiny-model", help="write the tiny random-weight XTTS model (produces noise)")
    tiny.add_argument("output_dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--decoder-width",
        type=int,
        default=32,
        help="HiFiGAN width, a multiple of 16 (default 32; 512 is the release's, which coqui's own loader builds)",
    )
    sub.add_parser("settings-table", help="print the settings as a Markdown table")
    sub.add_parser("fetch-release", help="download the official XTTS-v2 release (needs AVS_COQUI_TOS_AGREED)")
    listing = sub.add_parser("list-checkpoints", help="list checkpoints, models and adapters in storage")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect = sub.add_parser("inspect-model", help="validate and load a model directory, print the report")
    inspect.add_argument("model", help="a model id in storage or a directory path")
    export = sub.add_parser("export", help="compact a training checkpoint into a servable model directory")
    export.add_argument("--checkpoint", type=Path, required=True)
    export.add_argument("--base-model", required=True, help="model id the run started from")
    export.add_argument("--model-id", required=True, help="id of the new model under models/")
    export.add_argument("--overwrite", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors print one readable message and exit with status 2."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except VoiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from voice_core.settings import Settings, settings_table

    if args.command == "settings-table":
        print(settings_table())
        return 0
    if args.command == "make-tiny-model":
        from voice_core.tiny import TinyModelSpec, make_tiny_model

        path = make_tiny_model(args.output_dir, TinyModelSpec(seed=args.seed, decoder_width=args.decoder_width))
        print(f"wrote the tiny model (random weights: it produces noise) to {path}")
        return 0
    from voice_core.storage import Storage

    settings = Settings.load()
    storage = Storage.from_settings(settings).ensure()
    if args.command == "fetch-release":
        from voice_core.release import ensure_release

        print(ensure_release(settings, storage))
        return 0
    if args.command == "list-checkpoints":
        from voice_core.checkpoints import list_checkpoints

        entries = list_checkpoints(storage.root, storage.allowed_mounts)
        if args.json:
            print(json.dumps([e.to_dict() for e in entries], indent=2))
        for e in [] if args.json else entries:
            state = f"BROKEN: {e.reason}" if e.broken else f"{e.bytes / 1e6:.1f} MB"
            print(f"{e.kind:20} {e.path:60} {state}")
        return 0
    if args.command == "inspect-model":
        from voice_core.models import resolve_model
        from voice_core.xtts_model import load_xtts

        candidate = Path(args.model)
        if candidate.is_dir():
            model_id, directory = candidate.name, candidate
        else:
            model_id, directory = resolve_model(settings, storage, args.model)
        _model, report = load_xtts(directory, model_id=model_id, device=settings.device)
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    if args.command == "export":
        from voice_core.export import export_checkpoint
        from voice_core.models import resolve_model

        base_id, base_dir = resolve_model(settings, storage, args.base_model)
        result = export_checkpoint(
            args.checkpoint,
            base_dir,
            storage.model_dir(args.model_id),
            base_model_id=base_id,
            overwrite=args.overwrite,
        )
        print(f"exported {result.model_dir} ({result.source_bytes} -> {result.exported_bytes} bytes)")
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
