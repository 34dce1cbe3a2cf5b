"""``python -m voice_eval score ...`` (one clip) and ``python -m voice_eval score-set ...`` (a set of clips).

``score --text T --language L --reference REF.wav CLIP.wav [--json]`` scores one clip;
``score-set (--manifest FILE.json | --dir DIR --language L --reference REF.wav) --out DIR`` scores a set
through the Ray Data pipeline (``--sequential``: a plain loop) and writes ``report.json`` and ``report.txt``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from voice_core.errors import ConfigError, InvalidInputError, VoiceError
from voice_eval.asr import DEFAULT_ASR_MODEL


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m voice_eval", description="Voice quality metrics.")
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score an existing clip against its text and a reference voice")
    score.add_argument("clip", help="the audio file to score")
    score.add_argument("--text", required=True, help="what the clip should say")
    score.add_argument("--language", required=True, help="language code of the text, e.g. en")
    score.add_argument("--reference", required=True, help="a recording of the voice the clip imitates")
    score.add_argument(
        "--asr-model",
        default=DEFAULT_ASR_MODEL,
        help="tiny.en (English only, default), base (multilingual) or a CTranslate2 Whisper directory",
    )
    score.add_argument("--json", action="store_true", help="print one JSON object")
    _add_score_set(sub)
    return parser


def _add_score_set(sub: argparse._SubParsersAction) -> None:
    score_set = sub.add_parser(
        "score-set",
        help="score a set of existing clips (Ray Data pipeline) and write report.json and report.txt",
    )
    source = score_set.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="JSON list of {clip, text, language, reference, id} (paths relative to it)")
    source.add_argument("--dir", help="folder of audio files, each with its text in <stem>.txt")
    score_set.add_argument("--language", help="language of every clip (required with --dir; a default otherwise)")
    score_set.add_argument("--reference", help="reference recording of every clip (required with --dir)")
    score_set.add_argument("--out", required=True, help="folder for report.json and report.txt")
    score_set.add_argument("--asr-model", default=DEFAULT_ASR_MODEL, help="as for score")
    score_set.add_argument("--sequential", action="store_true", help="plain loop in this process instead of Ray")
    score_set.add_argument("--no-progress", action="store_true", help="no progress bar")


def _print_text(record: dict) -> None:
    print(f"WER          {record['wer']:.3f}")
    print(f"CER          {record['cer']:.3f}")
    print(f"similarity   {record['similarity']:.3f}")
    mos_text = "n/a (" + record["models"]["mos_unavailable_reason"] + ")" if record["mos"] is None else record["mos"]
    print(f"MOS          {mos_text}")
    print(f"flags        {', '.join(record['flags']) or 'none'}")
    print(f"transcript   {record['transcript']}")
    signal = record["signal"]
    print(
        f"signal       {signal['duration_s']:.2f} s, speech {signal['speech_s']:.2f} s "
        f"(expected {signal['expected_speech_s']:.2f} s), leading/trailing silence "
        f"{signal['leading_silence_s']:.2f}/{signal['trailing_silence_s']:.2f} s, "
        f"clipping {signal['clipping_ratio']:.4f}"
    )
    print(f"models       ASR {record['models']['asr']}; speaker encoder {record['models']['speaker_encoder']}")


def _score(args: argparse.Namespace) -> None:
    from voice_eval.score import score_clip

    result = score_clip(args.clip, args.text, args.language, args.reference, asr_model=args.asr_model)
    record = result.to_dict()
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        _print_text(record)


def _score_set(args: argparse.Namespace) -> None:
    from voice_eval import clipset, pipeline, report

    if args.manifest:
        items = clipset.from_manifest(args.manifest, args.language, args.reference)
    else:
        if not args.language or not args.reference:
            raise InvalidInputError("--dir needs --language and --reference (they apply to every clip)")
        items = clipset.from_folder(args.dir, args.language, args.reference)
    run = pipeline.score_clips_sequential if args.sequential else pipeline.score_clips
    started = time.perf_counter()
    clips = run(items, asr_model=args.asr_model, progress=not args.no_progress)
    meta = {
        "asr_model": args.asr_model,
        "path": "sequential" if args.sequential else "ray_data",
        "wall_s": round(time.perf_counter() - started, 2),
    }
    summary = report.summarize(clips, meta)
    json_path, _ = report.write_report(args.out, clips, summary)
    print(report.render_table(summary))
    print(f"\nwrote {json_path}")


def main(argv: list[str] | None = None) -> int:
    """Run the command; bad input (files, language, text, ASR model name) prints a message and returns 2.

    A missing or damaged offline model package prints its message and returns 1.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "score-set":
            _score_set(args)
        else:
            _score(args)
    except (InvalidInputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except VoiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
