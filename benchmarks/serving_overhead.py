"""Serving overhead: what HTTP + Serve add to one synthesis, compared with the engine called in-process.

Four paths run interleaved (the order alternates every round, so drift on a shared machine hits
all of them alike), each with the same short text, voice, parameters and seed:

* ``POST /v1/audio/speech`` (pcm) over HTTP; the route streams through ``engine.stream`` and an
  ``AudioStreamEncoder``;
* the same in-process: ``XttsEngine.stream`` + ``AudioStreamEncoder("pcm")`` (same code path);
* ``POST /tts`` (format pcm) over HTTP; the route calls ``engine.synthesize`` + ``encode_audio``;
* the same in-process: ``XttsEngine.synthesize`` + ``encode_audio(..., "pcm")``.

The in-process engine is loaded from the same files with as many torch threads as the replica
(Ray gives a one-CPU replica ``OMP_NUM_THREADS=1``). ``GET /health`` (proxy + ingress) and
``GET /languages`` (proxy + ingress + one handle call to the TTS replica) time the fixed costs alone.
Target (issue): at most 5 ms added at p50.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    SEED,
    TTS_NUM_CPUS,
    VOICE,
    Bench,
    bench_service,
    expect_ok,
    load_local_engine,
    replica_torch_threads,
    timed,
)
from benchmarks.report import Result, Table, cli, fmt_ms, percentile, summary_ms

NAME = "serving_overhead"
TEXT = "Hello, this is a short test of the voice service."
TARGET_ADDED_P50_MS = 5.0
# (HTTP path, in-process path, label, checked against the target): the first two compare the same code
# path; the third pairs the streamed route with a whole synthesis, whose compute differs (chunked
# decoding costs more), so it measures that difference as well as serving and is not checked.
COMPARISONS: tuple[tuple[str, str, str, bool], ...] = (
    ("http_speech", "local_stream", "/v1/audio/speech vs in-process stream+encoder (same path)", True),
    ("http_tts", "local_synthesize", "/tts vs in-process synthesize+encode_audio (same path)", True),
    ("http_speech", "local_synthesize", "/v1/audio/speech vs in-process synthesize+encode_audio", False),
)
LABELS = {
    "http_speech": "HTTP POST /v1/audio/speech (pcm, streamed)",
    "local_stream": "in-process engine.stream + AudioStreamEncoder",
    "http_tts": "HTTP POST /tts (pcm)",
    "local_synthesize": "in-process engine.synthesize + encode_audio",
}


def _paths(bench: Bench, client: Any) -> tuple[dict[str, Callable[[], bytes]], list[float], dict[str, Any]]:
    """The four synthesis paths, a list collecting /tts's server-side synthesis time, and the engine info."""
    import torch

    from serve_app.profiles import resolve_params
    from voice_core.audio import AudioStreamEncoder, encode_audio

    engine, settings = load_local_engine(bench.storage)
    voice = engine.builtin_voice(settings.openai_voices[VOICE])
    params = resolve_params("balanced", {})
    rate = engine.sample_rate
    server_synth_s: list[float] = []

    def http_speech() -> bytes:
        body = {"model": "tts-1", "input": TEXT, "voice": VOICE, "response_format": "pcm", "seed": SEED,
                "stream_unit": "tokens"}  # fmt: skip
        return expect_ok(client.post("/v1/audio/speech", json=body)).content

    def http_tts() -> bytes:
        body = {"text": TEXT, "voice": VOICE, "seed": SEED, "format": "pcm"}
        response = expect_ok(client.post("/tts", json=body))
        headers = response.headers
        server_synth_s.append(float(headers["x-real-time-factor"]) * float(headers["x-audio-seconds"]))
        return response.content

    def local_stream() -> bytes:
        encoder = AudioStreamEncoder("pcm", rate)
        data = b"".join(encoder.encode(chunk) for chunk in engine.stream(TEXT, "en", voice, params, SEED))
        return data + encoder.finish()

    def local_synthesize() -> bytes:
        return encode_audio(engine.synthesize(TEXT, "en", voice, params, SEED), rate, "pcm")

    paths = {
        "http_speech": http_speech,
        "local_stream": local_stream,
        "http_tts": http_tts,
        "local_synthesize": local_synthesize,
    }
    info = {
        "sample_rate": rate,
        "params": params.to_dict(),
        "local_torch_threads": torch.get_num_threads(),
        "replica_torch_threads": replica_torch_threads(TTS_NUM_CPUS),
    }
    return paths, server_synth_s, info


def _added(http: list[float], local: list[float]) -> dict[str, float | None]:
    paired = np.asarray([(h - loc) * 1000 for h, loc in zip(http, local, strict=True)])
    # Half-width of a normal 95% interval of the mean paired difference: the resolution of this run.
    ci95 = round(1.96 * float(paired.std(ddof=1)) / math.sqrt(len(paired)), 2) if len(paired) > 1 else None
    return {
        "paired_mean_ms": round(float(paired.mean()), 2),
        "paired_ci95_ms": ci95,
        "p50_ms": round((percentile(http, 50) - percentile(local, 50)) * 1000, 2),
        "p95_ms": round((percentile(http, 95) - percentile(local, 95)) * 1000, 2),
        "paired_p50_ms": round(percentile(paired, 50), 2),
        "paired_p95_ms": round(percentile(paired, 95), 2),
    }


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    """Measure and report the serving overhead; writes ``<out_dir>/serving_overhead.json``."""
    rounds = 2 if quick else 20
    trivial_rounds = 20 if quick else 200
    result = Result(
        NAME,
        quick,
        config={
            "rounds": rounds,
            "trivial_rounds": trivial_rounds,
            "text": TEXT,
            "voice": VOICE,
            "seed": SEED,
            "profile": "balanced",
            "response_format": "pcm",
            "tts_num_cpus": TTS_NUM_CPUS,
        },
    )
    measured = measure(rounds, trivial_rounds)
    result.config["engine"] = measured.engine_info
    report(result, measured)
    return result.finish(out_dir)


@dataclass
class Measurements:
    """Seconds per path and route, /tts's server-side synthesis seconds, and each path's first output."""

    times: dict[str, list[float]]
    trivial: dict[str, list[float]]
    server_synth_s: list[float]
    first: dict[str, bytes]
    engine_info: dict[str, Any]


def measure(rounds: int, trivial_rounds: int) -> Measurements:
    """Deploy, warm up every path once, then time ``rounds`` interleaved rounds and the trivial routes."""
    with bench_service() as bench, bench.service.client() as client:
        paths, server_synth_s, engine_info = _paths(bench, client)
        first: dict[str, bytes] = {}
        for name, path in paths.items():  # warm-up: first calls allocate and compile
            first[name] = path()
        server_synth_s.clear()
        times: dict[str, list[float]] = {name: [] for name in paths}
        for index in range(rounds):
            order = list(paths) if index % 2 == 0 else list(reversed(paths))
            for name in order:
                seconds, _ = timed(paths[name])
                times[name].append(seconds)
        trivial: dict[str, list[float]] = {"GET /health": [], "GET /languages": []}
        for _ in range(trivial_rounds):
            for route in trivial:
                seconds, response = timed(client.get, route.split(" ", 1)[1])
                expect_ok(response)
                trivial[route].append(seconds)
    return Measurements(times, trivial, server_synth_s, first, engine_info)


def report(result: Result, measured: Measurements) -> None:
    """Fill ``result``'s metrics, tables, checks and notes from the measurements."""
    times, trivial, first = measured.times, measured.trivial, measured.first
    rounds = len(times["http_tts"])
    latency = {name: summary_ms(values) for name, values in times.items()}
    added = {f"{http}-{local}": _added(times[http], times[local]) for http, local, _, _ in COMPARISONS}
    tts_minus_server = [(h - s) for h, s in zip(times["http_tts"], measured.server_synth_s, strict=True)]
    result.metrics = {
        "latency_ms": latency,
        "added_ms": added,
        "trivial_routes_ms": {route: summary_ms(values) for route, values in trivial.items()},
        "tts_server_synth_ms": summary_ms(measured.server_synth_s),
        "tts_http_minus_server_synth_ms": summary_ms(tts_minus_server),
        "identical_audio": {
            "http_speech==local_stream": first["http_speech"] == first["local_stream"],
            "http_tts==local_synthesize": first["http_tts"] == first["local_synthesize"],
        },
        "audio_seconds": round(len(first["http_speech"]) / 2 / measured.engine_info["sample_rate"], 3),
    }

    paths_table = Table("Latency per path (ms)", ["path", "n", "p50", "p95", "min", "max"])
    for name, label in LABELS.items():
        stats = latency[name]
        paths_table.add(label, stats["n"], *(fmt_ms(stats[k]) for k in ("p50_ms", "p95_ms", "min_ms", "max_ms")))
    for route, stats in result.metrics["trivial_routes_ms"].items():
        paths_table.add(route, stats["n"], *(fmt_ms(stats[k]) for k in ("p50_ms", "p95_ms", "min_ms", "max_ms")))
    stats = result.metrics["tts_http_minus_server_synth_ms"]
    paths_table.add(
        "/tts HTTP minus server-reported synthesis",
        stats["n"],
        *(fmt_ms(stats[k]) for k in ("p50_ms", "p95_ms", "min_ms", "max_ms")),
    )
    added_table = Table(
        "Added by serving (ms)",
        ["comparison", "p50 added", "p95 added", "paired p50", "paired p95", "paired mean ± 95% CI"],
    )
    for http, local, label, checked in COMPARISONS:
        values = added[f"{http}-{local}"]
        cells = (fmt_ms(values[k]) for k in ("p50_ms", "p95_ms", "paired_p50_ms", "paired_p95_ms"))
        added_table.add(label, *cells, f"{fmt_ms(values['paired_mean_ms'])} ± {fmt_ms(values['paired_ci95_ms'])}")
        if checked:
            result.check(
                f"added p50: {label}",
                values["p50_ms"],
                TARGET_ADDED_P50_MS,
                " ms",
                at_most=True,
                uncertainty=values["paired_ci95_ms"] if values["paired_ci95_ms"] is not None else float("inf"),
            )
    floor = result.metrics["trivial_routes_ms"]["GET /languages"]["p50_ms"]
    result.check(
        "GET /languages p50 (floor: proxy + ingress + one handle call)", floor, TARGET_ADDED_P50_MS, " ms", at_most=True
    )
    result.tables += [paths_table, added_table]
    result.notes += [
        f"{rounds} interleaved rounds (order alternating), after one warm-up call per path; short input "
        f"({len(TEXT)} chars), voice {VOICE!r}, seed {SEED}, balanced profile, pcm output.",
        "The tiny model generates its maximum of 80 audio tokens (~3.6 s of audio) here, so one synthesis takes "
        "2-5 s and varies by hundreds of ms between runs on a shared machine, far more than 5 ms: read the added "
        "ms with their 95% interval, and the GET /health and GET /languages round trips, which time the fixed "
        "costs alone.",
        "Streamed generation (engine.stream, used by /v1/audio/speech) costs more compute than a whole "
        "synthesis on the same text (coqui's inference_stream re-runs the HiFi-GAN decoder over all audio so far "
        "at every chunk), so the third comparison is reported but not checked against the target.",
        "A check is marked inconclusive when the paired 95% interval is wider than 5 ms; then rely on the "
        "/languages floor and on /tts minus its server-reported synthesis time (which also counts the "
        "replica's voice lookup and pcm encoding, under a millisecond here).",
        f"Torch threads: {measured.engine_info['local_torch_threads']} in-process; the replica gets "
        f"{measured.engine_info['replica_torch_threads']} (Ray sets OMP_NUM_THREADS to its whole CPUs).",
        "HTTP and in-process audio identical (first call): "
        + ", ".join(f"{k}: {v}" for k, v in result.metrics["identical_audio"].items()),
        "Server-reported synthesis comes from /tts's x-real-time-factor x x-audio-seconds headers "
        "(3 decimals, so about ±2 ms).",
    ]


if __name__ == "__main__":
    raise SystemExit(cli(NAME, run))
