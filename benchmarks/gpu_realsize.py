"""Real-size XTTS on a GPU: real-time factor and time to first audio (random weights, fixed token count).

When a CUDA device is present this builds a random-weight model of the XTTS-v2 release's size (30 GPT
layers, 1024 channels: :func:`benchmarks.batching.release_spec`) and measures, on the engine the TTS
replicas use, requests that generate a fixed number of audio tokens (random weights rarely pick the
stop token, so every request decodes up to the limit and runs compare):

- whole synthesis (one request decoded alone, :func:`benchmarks.engine_batch.stream_batch`): wall time,
  audio seconds and the real-time factor (wall / audio; below 1 is faster than real time);
- streamed synthesis (20-token chunks, the same): time to first audio and total.

Without CUDA it skips: the JSON says ``"skipped"`` with the reason, no table, no check, exit status 0.
``--allow-cpu`` runs the same measurement on the CPU (minutes per request at release size; meant to
check the code path, not for its figures); ``--model tiny`` swaps in the tiny model (the smoke test).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.engine_batch import stream_batch
from benchmarks.report import Result, Table, cli, summary_ms

NAME = "gpu_realsize"
TEXT = "Hello, this is a test of the voice service running on a graphics card."
TOKENS = 200  # audio tokens per request (~9 s of audio at 21.5 tokens/s)
TOKENS_QUICK = 20
REPS = 5
CHUNK_TOKENS = 20  # the balanced profile's stream_chunk_tokens


def _sync(engine: Any) -> None:
    import torch

    if engine.model.device.type == "cuda":
        torch.cuda.synchronize()


def _request(engine: Any, tokens: int, stream: bool) -> Any:
    from serve_app.speech.engine import EngineRequest
    from serve_app.speech.profiles import resolve_params

    params = resolve_params("balanced")  # streams in CHUNK_TOKENS-token chunks
    voice = engine.builtin_voice(engine.speakers[0])
    return EngineRequest(
        TEXT, "en", voice, params, seed=1, stream_unit="tokens" if stream else None, max_new_tokens=tokens
    )


def measure_once(engine: Any, tokens: int, stream: bool) -> dict[str, float]:
    """One request: wall seconds, audio seconds and (streamed) seconds to the first audio chunk."""
    request = _request(engine, tokens, stream)
    started = time.perf_counter()
    first: float | None = None
    samples = 0
    for _, audio in stream_batch(engine, [request]):
        if first is None and len(audio):
            _sync(engine)
            first = time.perf_counter() - started
        samples += len(audio)
    _sync(engine)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "audio_s": samples / engine.sample_rate, "first_audio_s": first or wall}


def run(out_dir: Path, quick: bool, allow_cpu: bool = False, model: str = "release") -> dict[str, Any]:
    """Measure the release-size (or ``model="tiny"``) model; a skipped result when there is no CUDA device."""
    import torch

    from benchmarks.batching import load

    tokens = TOKENS_QUICK if quick else TOKENS
    reps = 1 if quick else REPS
    if not torch.cuda.is_available() and not allow_cpu:
        result = Result(NAME, quick, config={"skipped": "no CUDA device (torch.cuda.is_available() is False)"})
        result.notes.append(
            "skipped: no CUDA device here; run on a GPU node, or pass --allow-cpu to check the code path"
        )
        return result.finish(out_dir)
    root = Path(tempfile.mkdtemp(prefix="avs-gpu-realsize-"))
    try:
        engine, _ = load(model, root)
        result = Result(
            NAME,
            quick,
            config={
                "model": "release-size random weights (30 layers, 1024 channels)" if model == "release" else model,
                "device": engine.report.device,
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                "max_new_tokens": tokens,
                "stream_chunk_tokens": CHUNK_TOKENS,
                "repetitions": reps,
                "text": TEXT,
            },
        )
        measure_once(engine, tokens, stream=False)  # warm-up (CUDA kernels, allocator)
        whole = [measure_once(engine, tokens, stream=False) for _ in range(reps)]
        streamed = [measure_once(engine, tokens, stream=True) for _ in range(reps)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rtf = [m["wall_s"] / m["audio_s"] for m in whole if m["audio_s"]]
    result.metrics = {
        "whole": {"wall_ms": summary_ms([m["wall_s"] for m in whole]), "audio_s": whole[0]["audio_s"]},
        "real_time_factor_p50": round(sorted(rtf)[len(rtf) // 2], 4) if rtf else None,
        "streamed": {
            "first_audio_ms": summary_ms([m["first_audio_s"] for m in streamed]),
            "total_ms": summary_ms([m["wall_s"] for m in streamed]),
            "audio_s": streamed[0]["audio_s"],
        },
    }
    table = Table(
        f"{model} XTTS on {result.config['device']}, {tokens} audio tokens per request",
        ["path", "audio s", "p50 ms", "p95 ms", "real-time factor p50", "first audio p50 ms"],
    )
    table.add(
        "whole synthesis",
        f"{whole[0]['audio_s']:.2f}",
        f"{result.metrics['whole']['wall_ms']['p50_ms']:.0f}",
        f"{result.metrics['whole']['wall_ms']['p95_ms']:.0f}",
        f"{result.metrics['real_time_factor_p50']}",
        "-",
    )
    table.add(
        f"streamed ({CHUNK_TOKENS}-token chunks)",
        f"{streamed[0]['audio_s']:.2f}",
        f"{result.metrics['streamed']['total_ms']['p50_ms']:.0f}",
        f"{result.metrics['streamed']['total_ms']['p95_ms']:.0f}",
        "-",
        f"{result.metrics['streamed']['first_audio_ms']['p50_ms']:.0f}",
    )
    result.tables.append(table)
    result.notes.append(
        "Random weights: the figures are the compute of a model of this size, not the quality of its speech. "
        "Audio seconds can fall short of the token count when a random draw picks the stop token."
    )
    return result.finish(out_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.gpu_realsize [--quick] [--out DIR] [--allow-cpu] [--model release|tiny]``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--allow-cpu", action="store_true")
    parser.add_argument("--model", choices=("release", "tiny"), default="release")
    known, rest = parser.parse_known_args(argv)
    return cli(NAME, lambda out, quick: run(out, quick, known.allow_cpu, known.model), rest)


if __name__ == "__main__":
    raise SystemExit(main())
