"""``python -m train_jobs finetune|export|search|checkpoints``: parse, call, print.

The finetune and search options are generated from :class:`train_jobs.config.FinetuneConfig`
(``--batch-size 4``, ``--lora-targets c_attn,c_proj``, ``--mixed-precision/--no-mixed-precision``).
Exit status: 0 on success, 2 when the options, model or dataset are rejected before training
(the message names the problem and the fix), 1 when training itself failed. Works the same locally
(a local Ray starts) and under ``ray job submit -- python -m train_jobs ...`` (``RAY_ADDRESS`` is
set by Ray: the job joins that cluster).

``finetune --config FILE`` reads the options from a JSON object of :class:`FinetuneConfig` fields
instead (lists as JSON arrays, so values may hold commas or start with ``-``); that is how the API
starts runs. It is refused together with option flags: one source of options, never a merge.
``--dataset-in-storage`` accepts only a dataset name under ``storage/datasets`` (never a path or a
directory in the working directory); the API passes it for every run it starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic.fields import FieldInfo

from train_jobs.config import FinetuneConfig, parse_config, read_config_file
from train_jobs.methods import METHODS
from train_jobs.search import SEARCHABLE
from voice_core.errors import VoiceError

REQUIRED = ("dataset", "base_model", "run_name")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(annotation: Any) -> Any:
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is not None and args and get_origin(annotation) is not tuple:
        annotation = args[0]
    return annotation if annotation in (int, float, str) else str


def _help(name: str, field: FieldInfo, required: bool) -> str:
    """A flag's help: the field's description, then its default (or that it is required)."""
    if name in REQUIRED:
        return f"{field.description} (required{'' if required else ' unless --config'})"
    default = ",".join(field.default) if isinstance(field.default, tuple) else field.default
    return f"{field.description} (default: {default})"


def _add_config_options(
    parser: argparse.ArgumentParser, *, lists: frozenset[str] = frozenset(), required: bool = True
) -> None:
    for name, field in FinetuneConfig.model_fields.items():
        flag, annotation = _flag(name), field.annotation
        help_text = _help(name, field, required)
        if annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif name in lists:
            parser.add_argument(
                flag,
                dest=name,
                default=None,
                metavar="A,B,...",
                help=f"{help_text}; comma-separated values are searched",
            )
        elif get_origin(annotation) is tuple:
            parser.add_argument(flag, dest=name, default=None, metavar="A,B,...", help=f"{help_text}; comma-separated")
        elif name == "method":
            parser.add_argument(flag, dest=name, choices=sorted(METHODS), default=None, help=help_text)
        else:
            parser.add_argument(
                flag,
                dest=name,
                type=_scalar_type(annotation),
                default=None,
                required=required and name in REQUIRED,
                help=help_text,
            )


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    root = argparse.ArgumentParser(prog="python -m train_jobs", description="XTTS-v2 fine-tuning on Ray Train")
    root.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    commands = root.add_subparsers(dest="command", required=True)
    finetune = commands.add_parser("finetune", help="train (or resume) a run")
    _add_config_options(finetune, required=False)  # required unless --config: checked in main
    finetune.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="read the options from a JSON object of option names (dataset, run_name, lora_targets as an "
        "array, ...); not combinable with option flags",
    )
    finetune.add_argument(
        "--dataset-in-storage",
        action="store_true",
        help="the dataset must be a name under storage/datasets (no paths, nothing from the working directory)",
    )
    finetune.add_argument("--check", action="store_true", help="run the pre-flight checks only")
    search = commands.add_parser("search", help="Ray Tune grid search; searchable options take comma lists")
    _add_config_options(search, lists=frozenset(SEARCHABLE))
    search.add_argument("--max-concurrent", type=int, default=2, help="trials at once (default 2)")
    export = commands.add_parser("export", help="export a run's checkpoint for serving")
    export.add_argument("--run", required=True, help="run name")
    export.add_argument("--model-id", default=None, help="id under storage/models (default: the run name)")
    export.add_argument("--checkpoint", default="best", help="best (lowest eval loss), latest, or a checkpoint name")
    export.add_argument("--merge", action="store_true", help="merge a LoRA adapter into a full model")
    export.add_argument("--overwrite", action="store_true", help="replace an existing model with that id")
    listing = commands.add_parser("checkpoints", help="list a run's checkpoints")
    listing.add_argument("--run", required=True, help="run name")
    return root


def _config_values(args: argparse.Namespace, lists: frozenset[str] = frozenset()) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in FinetuneConfig.model_fields.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if get_origin(field.annotation) is tuple and name not in lists:
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        values[name] = value
    return values


def _finetune_config(args: argparse.Namespace) -> FinetuneConfig:
    """The options of ``finetune``: from ``--config FILE`` or from the flags, never both."""
    values = _config_values(args)
    if args.config is not None:
        if values:
            flags = ", ".join(_flag(name) for name in values)
            raise VoiceError(
                f"--config {args.config} was given with option flags ({flags}); put every option in the file, "
                "or drop --config and pass flags only"
            )
        return read_config_file(args.config)
    missing = [_flag(name) for name in REQUIRED if name not in values]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise VoiceError(
            f"{', '.join(missing)} {verb} required (or give every option in a JSON file with --config FILE)"
        )
    return parse_config(values)


def connect_ray(address: str | None) -> None:
    """Join ``address``/``RAY_ADDRESS``/``AVS_RAY_ADDRESS``, or start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS") or os.environ.get("AVS_RAY_ADDRESS")
    if target:
        ray.init(address=target)
    else:
        ray.init(include_dashboard=False)


def _search_space(args: argparse.Namespace) -> dict[str, list[Any]]:
    space = {}
    for name in SEARCHABLE:
        raw = getattr(args, name, None)
        if raw is None:
            continue
        kind = _scalar_type(FinetuneConfig.model_fields[name].annotation)
        try:
            space[name] = [kind(part) for part in str(raw).split(",") if part.strip()]
        except ValueError:
            raise VoiceError(f"{_flag(name)} {raw!r}: expected comma-separated {kind.__name__} values") from None
    return space


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from voice_core.settings import Settings

    try:
        settings = Settings.load()
        if args.command == "export":
            from train_jobs.export import export_run

            print(
                json.dumps(
                    export_run(
                        settings,
                        args.run,
                        model_id=args.model_id,
                        checkpoint=args.checkpoint,
                        merge=args.merge,
                        overwrite=args.overwrite,
                    ),
                    indent=2,
                )
            )
            return 0
        if args.command == "checkpoints":
            from voice_core.checkpoints import TRAINING_COLUMNS, training_checkpoints
            from voice_core.storage import Storage

            storage = Storage.from_settings(settings)
            rows = training_checkpoints(storage.root, args.run, storage.allowed_mounts)
            print(_table(rows, TRAINING_COLUMNS) if rows else "none")
            return 0
        if args.command == "search":
            from train_jobs.search import search

            space = _search_space(args)
            config = parse_config(_config_values(args, frozenset(space)) | {k: v[0] for k, v in space.items()})
            connect_ray(args.address)
            summary = search(config, space, settings, max_concurrent=args.max_concurrent)
            print(_table(summary["trials"], ("run_name", *space, "steps", "best_eval_loss", "error")))
            best = summary["best"]
            print(f"best: {best['run_name']} eval_loss={best['best_eval_loss']:.4f}" if best else "no trial finished")
            return 0 if best else 1
        config = _finetune_config(args)
        in_storage = args.dataset_in_storage
        if args.check:
            from train_jobs.runner import check_only

            print(json.dumps(check_only(config, settings, dataset_in_storage=in_storage), indent=2))
            return 0
        from train_jobs.runner import finetune

        connect_ray(args.address)
        print(json.dumps(finetune(config, settings, dataset_in_storage=in_storage), indent=2, default=str))
        return 0
    except VoiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
