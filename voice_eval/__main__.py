"""``python -m voice_eval score --text T --language L --reference REF.wav CLIP.wav [--json]``."""

from __future__ import annotations

import argparse
import json
import sys

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
    return parser


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


def main(argv: list[str] | None = None) -> int:
    """Run the command; bad input (files, language, text, ASR model name) prints a message and returns 2.

    A missing or damaged offline model package prints its message and returns 1.
    """
    args = build_parser().parse_args(argv)
    from voice_eval.score import score_clip

    try:
        result = score_clip(args.clip, args.text, args.language, args.reference, asr_model=args.asr_model)
    except (InvalidInputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except VoiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    record = result.to_dict()
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        _print_text(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
