"""Batching: aggregate audio seconds per wall second with 1, 4, 8 and 16 concurrent requests, batched vs not.

In-process, on the engine the TTS deployment uses (no Ray: Serve's ``@serve.batch`` only gathers the
requests; what batching changes is the decoding measured here). At each level that many requests
(different texts, English and Portuguese, different voices and seeds, sampled decoding, one piece
each) arrive together:

- unbatched: they are decoded one after another (a replica's lock serialises them), each alone, as a
  batch of one, which is coqui's ``Xtts.inference`` bit for bit (tests/serve_app/test_batch_decode.py);
- batched: they are decoded together in one batch (``max_batch_size`` at least the level).

Each level runs both paths back to back five times, alternating which goes first, and reports the
round with the median batched/unbatched ratio (ratios taken within a round: this machine's speed drifts).

A request's latency is from the common start to its last audio. ``--model tiny`` (the default on CPU)
is the tiny random-weight model with its 77-token limit; ``--model release`` (the default when CUDA is
present) is a random-weight model of the release's size (30 layers, 1024 channels) decoding a fixed
number of tokens per request (the token limit; random weights rarely pick the stop token).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.engine_batch import stream_batch
from benchmarks.report import Result, Table, cli, summary_ms

NAME = "batching"
LEVELS: tuple[int, ...] = (1, 4, 8, 16)
LEVELS_QUICK: tuple[int, ...] = (1, 2)
ROUNDS = 5
TARGET_LEVEL = 8
TARGET_RATIO = 3.0
RELEASE_TOKENS = 200
TEXTS: tuple[tuple[str, str], ...] = (
    ("Hello, this is a short test of the voice service.", "en"),
    ("Olá, tudo bem com você? Estou bem, obrigado.", "pt"),
    ("Please read the following sentence slowly and clearly.", "en"),
    ("A síntese de voz transforma texto em fala.", "pt"),
)


def release_spec() -> Any:
    """Dimensions of the XTTS-v2 release GPT and HiFiGAN (random weights)."""
    from voice_core.tiny import TinyModelSpec

    return TinyModelSpec(
        gpt_layers=30, gpt_n_model_channels=1024, gpt_n_heads=16, gpt_max_audio_tokens=605, decoder_width=512
    )


def requests_for(engine: Any, count: int, max_new_tokens: int | None) -> list[Any]:
    """``count`` different requests: texts, languages, voices and seeds rotate."""
    from serve_app.speech.engine import EngineRequest
    from serve_app.speech.profiles import resolve_params

    params = resolve_params("balanced")
    made = []
    for index in range(count):
        text, language = TEXTS[index % len(TEXTS)]
        voice = engine.builtin_voice(engine.speakers[index % len(engine.speakers)])
        made.append(EngineRequest(text, language, voice, params, seed=index, max_new_tokens=max_new_tokens))
    return made


def _sync(engine: Any) -> None:
    import torch

    if engine.model.device.type == "cuda":
        torch.cuda.synchronize()


@contextmanager
def vocoder_clock(engine: Any) -> Iterator[list[float]]:
    """Wall time spent making audio from GPT latents (HiFiGAN) while the block runs.

    Wraps ``serve_app.speech.batch_decode._vocode``, through which every whole piece and streamed chunk of
    both paths goes; the time outside it is the GPT's decoding (and everything else per request).
    """
    import serve_app.speech.batch_decode as batch_decode

    spent = [0.0]
    original = batch_decode._vocode

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _sync(engine)
            spent[0] += time.perf_counter() - started

    batch_decode._vocode = timed
    try:
        yield spent
    finally:
        batch_decode._vocode = original


def measure(engine: Any, requests: list[Any], batched: bool) -> dict[str, Any]:
    """Decode ``requests`` arriving together, batched or one after another; throughput and latencies."""
    groups = [requests] if batched else [[r] for r in requests]
    latencies: list[float] = []
    audio_s = 0.0
    with vocoder_clock(engine) as vocoder:
        started = time.perf_counter()
        for group in groups:
            done: dict[int, float] = {}
            for index, audio in stream_batch(engine, group):
                audio_s += len(audio) / engine.sample_rate
                done[index] = time.perf_counter()
            _sync(engine)
            latencies += [done[i] - started for i in range(len(group))]
        wall = time.perf_counter() - started
    return {
        "requests": len(requests),
        "wall_s": round(wall, 3),
        "vocoder_s": round(vocoder[0], 3),
        "decoding_s": round(wall - vocoder[0], 3),
        "audio_s": round(audio_s, 3),
        "audio_s_per_s": round(audio_s / wall, 4),
        "latency_ms": summary_ms(latencies),
    }


def vocoder_share(engine: Any, request: Any, repeats: int = 3) -> float:
    """Fraction of one request's time spent in HiFiGAN (fastest of ``repeats`` for each)."""
    import torch

    tokens = request.max_new_tokens or engine.model.gpt.max_gen_mel_tokens
    latents = torch.zeros(1, tokens, engine.model.gpt.model_dim, device=engine.model.device)
    embedding = request.voice.speaker_embedding.to(engine.model.device)
    totals, vocoder = [], []
    for _ in range(repeats):
        totals.append(measure(engine, [request], batched=False)["wall_s"])
        with torch.inference_mode():
            started = time.perf_counter()
            engine.model.hifigan_decoder(latents, g=embedding)
            _sync(engine)
            vocoder.append(time.perf_counter() - started)
    # Both are minima of noisy timings: on a busy machine the vocoder alone can time above a whole request.
    return round(min(min(vocoder) / min(totals), 1.0), 3)


def load(model: str, root: Path, release_tokens: int = RELEASE_TOKENS) -> tuple[Any, int | None]:
    """Build and load the chosen random-weight model; returns the engine and the tokens per request."""
    from serve_app.speech.engine import XttsEngine
    from voice_core.tiny import make_tiny_model
    from voice_core.xtts_model import load_xtts

    spec = release_spec() if model == "release" else None
    directory = make_tiny_model(root / model, spec)
    xtts, report = load_xtts(directory, device="auto")
    return XttsEngine(xtts, report), release_tokens if model == "release" else None


def measure_level(engine: Any, requests: list[Any], rounds: int) -> dict[str, Any]:
    """Both paths on ``requests`` for ``rounds`` rounds: the round with the median ratio, and every ratio."""
    row: dict[str, Any] = {"concurrent": len(requests)}
    pairs: list[dict[str, Any]] = []
    for round_index in range(rounds):
        # Both paths back to back, alternating which goes first: this machine's speed drifts
        # over tens of seconds (other tenants, throttling), so a ratio is taken within a round.
        order = ("unbatched", "batched") if round_index % 2 == 0 else ("batched", "unbatched")
        pair = {mode: measure(engine, requests, batched=mode == "batched") for mode in order}
        pair["throughput_ratio"] = round(pair["batched"]["audio_s_per_s"] / pair["unbatched"]["audio_s_per_s"], 3)
        # Same requests, same tokens: the ratio of times outside HiFiGAN is the decoder's own speed-up.
        pair["decoding_ratio"] = round(pair["unbatched"]["decoding_s"] / max(pair["batched"]["decoding_s"], 1e-9), 3)
        pair["vocoder_ratio"] = round(pair["unbatched"]["vocoder_s"] / max(pair["batched"]["vocoder_s"], 1e-9), 3)
        pairs.append(pair)
    # The round with the median ratio is reported whole, so the table's figures belong together.
    median = sorted(pairs, key=lambda pair: pair["throughput_ratio"])[len(pairs) // 2]
    row.update(median)
    row["round_ratios"] = [pair["throughput_ratio"] for pair in pairs]
    return row


def throughput_table(rows: list[dict[str, Any]], model: str, device: str) -> Table:
    """The levels' figures as the report's table."""
    table = Table(
        f"Aggregate throughput, {model} model on {device}",
        [
            "concurrent",
            "unbatched audio s/s",
            "batched audio s/s",
            "ratio",
            "GPT decoding ratio",
            "HiFiGAN ratio",
            "unbatched p95 ms",
            "batched p95 ms",
        ],
    )
    for row in rows:
        table.add(
            row["concurrent"],
            f"{row['unbatched']['audio_s_per_s']:.3f}",
            f"{row['batched']['audio_s_per_s']:.3f}",
            f"{row['throughput_ratio']:.2f}x",
            f"{row['decoding_ratio']:.2f}x",
            f"{row['vocoder_ratio']:.2f}x",
            f"{row['unbatched']['latency_ms']['p95_ms']:.0f}",
            f"{row['batched']['latency_ms']['p95_ms']:.0f}",
        )
    return table


def run(
    out_dir: Path,
    quick: bool,
    model: str = "auto",
    levels: tuple[int, ...] | None = None,
    release_tokens: int = RELEASE_TOKENS,
) -> dict[str, Any]:
    """Measure both paths at each level; writes ``<out_dir>/batching.json``.

    Args:
        out_dir: where the JSON goes.
        quick: two small levels, one round.
        model: ``tiny``, ``release`` or ``auto`` (release when CUDA is present).
        levels: concurrency levels instead of the default ones.
        release_tokens: tokens each request of the release-size model decodes.
    """
    import torch

    if model == "auto":
        model = "release" if torch.cuda.is_available() else "tiny"
    levels = levels or (LEVELS_QUICK if quick else LEVELS)
    rounds = 1 if quick else ROUNDS
    root = Path(tempfile.mkdtemp(prefix="avs-batching-"))
    try:
        engine, tokens = load(model, root, release_tokens)
        result = Result(
            NAME,
            quick,
            config={
                "model": model,
                "device": engine.report.device,
                "torch_threads": torch.get_num_threads(),
                "levels": list(levels),
                "rounds_per_level": rounds,
                "max_new_tokens": tokens or engine.model.gpt.max_gen_mel_tokens,
                "profile": "balanced",
                "texts": [t for t, _ in TEXTS],
            },
        )
        # Warm-up: every text alone and the largest batch once, so first-call costs (allocations, kernel
        # choices per shape) land in no level's figures.
        measure(engine, requests_for(engine, len(TEXTS), tokens), batched=False)
        measure(engine, requests_for(engine, max(levels), tokens), batched=True)
        rows: list[dict[str, Any]] = []
        for level in levels:
            row = measure_level(engine, requests_for(engine, level, tokens), rounds)
            rows.append(row)
            print(f"{level} concurrent: batched/unbatched throughput {row['throughput_ratio']:.2f}x", flush=True)
        share = vocoder_share(engine, requests_for(engine, 1, tokens)[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result.metrics = {"levels": rows, "vocoder_share_of_one_request": share}
    result.tables.append(throughput_table(rows, model, result.config["device"]))
    at_target = [row for row in rows if row["concurrent"] == TARGET_LEVEL]
    if at_target:
        result.check(
            f"batched / unbatched audio s per s at {TARGET_LEVEL} concurrent ({model})",
            at_target[0]["throughput_ratio"],
            TARGET_RATIO,
            "x",
            at_most=False,
        )
    result.notes += [
        f"HiFiGAN takes {share:.0%} of one unbatched request's time here. Batching shares the GPT's "
        "per-step work between requests (the GPT decoding ratio: time outside HiFiGAN, unbatched over "
        "batched). HiFiGAN's work stays per request: on a GPU, latents of equal length share one forward; "
        f"on a CPU each runs alone, side by side on a pool of {torch.get_num_threads()} threads of one core "
        "each, which fills cores one call leaves idle (the HiFiGAN ratio) but does no less arithmetic.",
        f"At 1 concurrent request both paths do the same work; their ratio ({rows[0]['throughput_ratio']:.2f}x) "
        "shows how much this run's timings move by themselves (other load on the machine).",
        "Unbatched requests wait in line, so their p95 latency is nearly the whole run; batched ones finish "
        "together at the end of their batch.",
    ]
    return result.finish(out_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.batching [--quick] [--out DIR] [--model M] [--levels 1,4,8] [--tokens N]``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", choices=("auto", "tiny", "release"), default="auto")
    parser.add_argument("--levels", type=_levels, default=None, help="concurrency levels, e.g. 1,4,8")
    parser.add_argument("--tokens", type=_tokens, default=RELEASE_TOKENS, help="tokens per request (release model)")
    known, rest = parser.parse_known_args(argv)
    return cli(NAME, lambda out, quick: run(out, quick, known.model, known.levels, known.tokens), rest)


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--levels takes comma-separated whole numbers, e.g. 1,4,8; got {text!r}"
        ) from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"--levels must be 1 or more each; got {text!r}")
    return levels


def _tokens(text: str) -> int:
    try:
        tokens = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tokens takes a whole number, e.g. 40; got {text!r}") from None
    if tokens < 1:
        raise argparse.ArgumentTypeError(f"--tokens must be 1 or more; got {text!r}")
    return tokens


if __name__ == "__main__":
    raise SystemExit(main())
