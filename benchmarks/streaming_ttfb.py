"""Streaming: time to the first audio byte against the time to the whole answer, for ~300 characters.

Both streaming routes, ``POST /tts/stream`` and ``POST /v1/audio/speech``, with raw pcm output (so
the first body byte is audio, not a container header), each with the default ``balanced`` profile
and with ``fast``: the profile a caller picks for low latency (shorter text pieces, 10-token stream
chunks instead of 20). ``/tts/stream`` decodes greedily (``do_sample: false``); the OpenAI route
has no such field and samples with a fixed seed. Requests are interleaved across the four set-ups.
Target (issue): first byte at most 25% of the total time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.harness import SEED, VOICE, bench_service, expect_ok
from benchmarks.report import Result, Table, cli, fmt_ms, percentile

NAME = "streaming_ttfb"
TEXT = (
    "The quick brown fox jumps over the lazy dog while the morning sun climbs above the quiet hills. "
    "Streaming speech lets a listener hear the first words long before the whole answer has been spoken, "
    "which matters for assistants and phone calls. This last sentence brings the text to about three hundred "
    "characters."
)
WARMUP_TEXT = "Warming up."
TARGET_RATIO = 0.25
SAMPLE_RATE = 24000
# (route, profile); "fast" is what a caller who wants the earliest audio would choose.
SETUPS: tuple[tuple[str, str], ...] = (
    ("/tts/stream", "balanced"),
    ("/tts/stream", "fast"),
    ("/v1/audio/speech", "balanced"),
    ("/v1/audio/speech", "fast"),
)


def _body(route: str, profile: str, text: str) -> dict[str, Any]:
    if route == "/tts/stream":
        return {
            "text": text,
            "voice": VOICE,
            "quality_profile": profile,
            "do_sample": False,
            "seed": SEED,
            "format": "pcm",
        }
    return {
        "model": "tts-1",
        "input": text,
        "voice": VOICE,
        "response_format": "pcm",
        "seed": SEED,
        "quality_profile": profile,
        "stream_unit": "tokens",  # token-level streaming (the route's default sends whole sentences)
    }


def stream_once(client: Any, route: str, profile: str, text: str = TEXT) -> dict[str, float]:
    """One streamed request: seconds to the response headers, to the first audio byte and to the end."""
    started = time.perf_counter()
    first = None
    size = 0
    with client.stream("POST", route, json=_body(route, profile, text)) as response:
        headers_s = time.perf_counter() - started
        if response.status_code != 200:
            response.read()
            expect_ok(response)
        for chunk in response.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - started
            size += len(chunk)
    total = time.perf_counter() - started
    if first is None:
        raise RuntimeError(f"{route} ({profile}) streamed no audio")
    return {
        "headers_s": headers_s,
        "first_byte_s": first,
        "total_s": total,
        "ratio": first / total,
        "audio_s": size / 2 / SAMPLE_RATE,
    }


def _pieces(profile: str) -> int:
    from serve_app.speech.profiles import resolve_params
    from serve_app.speech.text import split_text

    return len(split_text(TEXT, "en", resolve_params(profile).split_chars))


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    """Measure first-byte and total times of streamed synthesis; writes ``<out_dir>/streaming_ttfb.json``."""
    from serve_app.speech.profiles import PROFILES

    reps = 1 if quick else 5
    result = Result(
        NAME,
        quick,
        config={
            "repetitions": reps,
            "text_chars": len(TEXT),
            "text": TEXT,
            "voice": VOICE,
            "seed": SEED,
            "response_format": "pcm",
            "setups": [{"route": r, "profile": p} for r, p in SETUPS],
        },
    )
    runs: dict[tuple[str, str], list[dict[str, float]]] = {setup: [] for setup in SETUPS}
    with bench_service() as bench, bench.service.client() as client:
        for route, profile in SETUPS:  # warm-up of every code path, on a short text to save time
            stream_once(client, route, profile, WARMUP_TEXT)
        for index in range(reps):
            order = SETUPS if index % 2 == 0 else tuple(reversed(SETUPS))
            for route, profile in order:
                runs[(route, profile)].append(stream_once(client, route, profile))

    table = Table(
        "Streamed synthesis of ~300 characters (p50 over repetitions)",
        ["route", "profile", "chunk tokens", "pieces", "headers ms", "first byte ms", "total ms", "first/total",
         "audio s", "target"],
    )  # fmt: skip
    result.metrics = {"setups": []}
    for route, profile in SETUPS:
        samples = runs[(route, profile)]
        entry = {
            "route": route,
            "profile": profile,
            "stream_chunk_tokens": PROFILES[profile].stream_chunk_tokens,
            "pieces": _pieces(profile),
            "n": len(samples),
            **{
                f"{key}_p50": round(percentile([s[key] for s in samples], 50), 4)
                for key in ("headers_s", "first_byte_s", "total_s", "ratio", "audio_s")
            },
            "runs": [{k: round(v, 4) for k, v in s.items()} for s in samples],
        }
        result.metrics["setups"].append(entry)
        check = result.check(
            f"first byte / total: {route} ({profile})", entry["ratio_p50"], TARGET_RATIO, "", at_most=True
        )
        table.add(
            route,
            profile,
            entry["stream_chunk_tokens"],
            entry["pieces"],
            fmt_ms(entry["headers_s_p50"] * 1000),
            fmt_ms(entry["first_byte_s_p50"] * 1000),
            fmt_ms(entry["total_s_p50"] * 1000),
            f"{entry['ratio_p50']:.1%}",
            f"{entry['audio_s_p50']:.2f}",
            "PASS" if check["passed"] else "FAIL",
        )
    result.tables.append(table)
    result.notes += [
        f"{reps} repetition(s) per set-up, interleaved, after a short warm-up request per set-up; "
        f"{len(TEXT)}-character English input, voice {VOICE!r}, seed {SEED}, pcm output (first body byte = audio).",
        "'fast' is the low-latency choice a caller would make: 150-character pieces and 10-token stream chunks; "
        "'balanced' (the default) streams 20-token chunks of up to 250-character pieces.",
        "The tiny model generates its maximum of 80 audio tokens per piece, so the total time grows with the "
        "number of pieces while the first byte depends only on the first chunk of the first piece. coqui's "
        "streaming re-decodes all audio so far at every chunk, so smaller chunks (fast) also lengthen the total: "
        "compare first-byte times directly, not only the ratios.",
        "headers ms: when the response headers arrived; the routes can send them once the voice and parameters "
        "are resolved, before the first audio.",
    ]
    return result.finish(out_dir)


if __name__ == "__main__":
    raise SystemExit(cli(NAME, run))
