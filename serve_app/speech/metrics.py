"""Service metrics through ``ray.util.metrics`` (exported by Ray's Prometheus endpoint)."""

from __future__ import annotations

import functools
from typing import Any

LATENCY_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120]
RTF_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8]


@functools.cache
def metrics() -> dict[str, Any]:
    """Create the metric objects once per process (Ray must be initialised)."""
    from ray.util.metrics import Counter, Histogram

    return {
        "requests": Counter("avs_requests_total", "HTTP requests by route and status.", tag_keys=("route", "status")),
        "errors": Counter("avs_errors_total", "Failed requests by error type.", tag_keys=("route", "type")),
        "latency": Histogram(
            "avs_request_latency_seconds", "Request latency.", boundaries=LATENCY_BOUNDARIES, tag_keys=("route",)
        ),
        "first_audio": Histogram(
            "avs_time_to_first_audio_seconds", "Time to the first audio byte.", boundaries=LATENCY_BOUNDARIES
        ),
        "audio_seconds": Counter("avs_audio_seconds_total", "Seconds of audio produced.", tag_keys=("model",)),
        "rtf": Histogram(
            "avs_real_time_factor", "Synthesis time divided by audio duration.", boundaries=RTF_BOUNDARIES
        ),
        "fallbacks": Counter("avs_fallbacks_total", "Requests served by the base model instead of the requested one."),
    }


def record_request(route: str, status: int, seconds: float, error_type: str | None = None) -> None:
    """Count one finished request."""
    m = metrics()
    m["requests"].inc(tags={"route": route, "status": str(status)})
    m["latency"].observe(seconds, tags={"route": route})
    if error_type:
        m["errors"].inc(tags={"route": route, "type": error_type})


def record_synthesis(model: str, audio_seconds: float, synth_seconds: float, first_audio_s: float | None,
                     fallback: bool) -> None:  # fmt: skip
    """Record the audio side of one synthesis."""
    m = metrics()
    if audio_seconds > 0:
        m["audio_seconds"].inc(audio_seconds, tags={"model": model})
        m["rtf"].observe(synth_seconds / audio_seconds)
    if first_audio_s is not None:
        m["first_audio"].observe(first_audio_s)
    if fallback:
        m["fallbacks"].inc()


def record_first_audio(seconds: float) -> None:
    """Record the time from a streamed request's dispatch to its first audio chunk."""
    metrics()["first_audio"].observe(seconds)
