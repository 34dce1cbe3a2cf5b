"""Throughput: requests/s, latency and 503s with 1, 4 and 16 concurrent clients.

Each level sends a fixed number of identical ``POST /tts`` requests (short text, pcm, fixed seed,
greedy decoding) from that many clients, each starting its next request as soon as its last one
ends. ``/tts`` synthesises whole (``/v1/audio/speech`` streams, which on the tiny model costs about
twice the compute per request, see serving_overhead), which keeps a full run to a few minutes.
The application has one TTS replica with the default ``max_ongoing_requests`` and, in this
benchmark only, ``max_queued_requests=64``, so 16 clients queue rather than get 503s.
The issue sets no throughput target; the benchmark records where requests/s stop growing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import SEED, VOICE, Service, bench_service, expect_ok
from benchmarks.report import Result, Table, cli, fmt_ms, summary_ms

NAME = "throughput"
TEXT = "Hello, this is a short test of the voice service."
LEVELS: tuple[int, ...] = (1, 4, 16)
REQUESTS_FULL = {1: 8, 4: 16, 16: 48}
REQUESTS_QUICK = {1: 2, 4: 4, 16: 16}
MAX_QUEUED = 64
# Requests/s must grow by more than this factor for a level to count as still scaling.
SCALING_FACTOR = 1.15
SAMPLE_RATE = 24000


async def _level(service: Service, clients: int, total: int) -> dict[str, Any]:
    """Run ``total`` requests from ``clients`` concurrent clients; return latencies and status counts."""
    body = {"text": TEXT, "voice": VOICE, "seed": SEED, "do_sample": False, "format": "pcm"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    audio_bytes = 0
    remaining = total

    async def client_loop(client: Any) -> None:
        nonlocal remaining, audio_bytes
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            response = await client.post("/tts", json=body)
            elapsed = time.perf_counter() - started
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                latencies.append(elapsed)
                audio_bytes += len(response.content)

    async with service.async_client(connections=clients + 2) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - started
    ok = statuses.get(200, 0)
    return {
        "clients": clients,
        "requests": total,
        "ok": ok,
        "status_503": statuses.get(503, 0),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "wall_s": round(wall, 3),
        "requests_per_s": round(ok / wall, 4),
        "audio_s_per_s": round(audio_bytes / 2 / SAMPLE_RATE / wall, 4),
        "latency_ms": summary_ms(latencies),
    }


def saturation(levels: list[dict[str, Any]]) -> int | None:
    """The concurrency after which requests/s stop growing by more than ``SCALING_FACTOR`` (None: still scaling)."""
    for previous, current in itertools.pairwise(levels):
        if current["requests_per_s"] < previous["requests_per_s"] * SCALING_FACTOR:
            return previous["clients"]
    return None


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    """Measure throughput at each concurrency level; writes ``<out_dir>/throughput.json``."""
    requests = REQUESTS_QUICK if quick else REQUESTS_FULL
    result = Result(
        NAME,
        quick,
        config={
            "levels": list(LEVELS),
            "requests_per_level": {str(k): v for k, v in requests.items()},
            "text": TEXT,
            "voice": VOICE,
            "seed": SEED,
            "route": "/tts",
            "do_sample": False,
            "format": "pcm",
            "tts_max_queued_requests": MAX_QUEUED,
        },
    )
    levels: list[dict[str, Any]] = []
    with bench_service(max_queued_requests=MAX_QUEUED) as bench:
        tts_args = bench.service.args["tts"]
        with bench.service.client() as client:  # warm-up
            expect_ok(client.post("/tts", json={"text": TEXT, "voice": VOICE, "format": "pcm"}))
        for clients in LEVELS:
            levels.append(asyncio.run(_level(bench.service, clients, requests[clients])))
    from serve_app.config import TTSDeploymentArgs

    max_ongoing = tts_args.get("max_ongoing_requests", TTSDeploymentArgs().max_ongoing_requests)
    result.config["tts_max_ongoing_requests"] = max_ongoing
    saturated_at = saturation(levels)
    result.metrics = {"levels": levels, "saturates_after_clients": saturated_at}
    table = Table(
        "POST /tts under concurrency",
        ["clients", "requests", "ok", "503s", "wall s", "req/s", "audio s/s", "p50 ms", "p95 ms"],
    )
    for level in levels:
        table.add(
            level["clients"],
            level["requests"],
            level["ok"],
            level["status_503"],
            f"{level['wall_s']:.1f}",
            f"{level['requests_per_s']:.3f}",
            f"{level['audio_s_per_s']:.2f}",
            fmt_ms(level["latency_ms"].get("p50_ms")),
            fmt_ms(level["latency_ms"].get("p95_ms")),
        )
    result.tables.append(table)
    total_503 = sum(level["status_503"] for level in levels)
    result.check("503 responses (queue of 64)", total_503, 0, "", at_most=True, source="sanity")
    result.notes += [
        f"One TTS replica (num_cpus {tts_args['num_cpus']}), max_ongoing_requests={max_ongoing}, "
        f"max_queued_requests={MAX_QUEUED} (raised for this benchmark so 16 clients queue instead of getting 503s).",
        "Requests/s "
        + (
            f"stop growing (less than {SCALING_FACTOR}x) after {saturated_at} concurrent client(s)."
            if saturated_at is not None
            else f"still grow by at least {SCALING_FACTOR}x at {LEVELS[-1]} clients."
        ),
        "A replica decodes one batch at a time (one lock per model); concurrent requests share a batch of at "
        "most AVS_BATCH_MAX_SIZE (default 4) and max_ongoing_requests, so clients beyond that add queueing "
        "latency; p50 latency grows with the clients ahead in line. benchmarks/batching.py measures what "
        "batching alone gains, without HTTP; here the clients, proxy and ingress share the same CPUs.",
    ]
    return result.finish(out_dir)


if __name__ == "__main__":
    raise SystemExit(cli(NAME, run))
