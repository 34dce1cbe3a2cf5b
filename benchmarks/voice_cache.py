"""Voice cache: a stored voice (latents computed once) against reference audio uploaded with every request.

A ~10 s espeak-ng recording is stored once with ``POST /voices``; then the same ``POST /tts`` (short
text, fixed seed, greedy decoding, pcm) runs interleaved in two forms: JSON naming the stored voice,
and multipart carrying the recording as ``reference``, which makes the replica decode it and
compute the voice's latents on every request.

The tiny model generates its maximum of 80 audio tokens whatever the text, so a short text does
not shorten its synthesis, which then hides the latents' cost. The benchmark therefore also
stores a second tiny model limited to 16 audio tokens (``tiny-xtts-short``, ~0.6 s of audio),
which stands for the short answer the comparison is about, and requests it by name.
Target (issue): the stored voice at least 2x faster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import SEED, bench_service, espeak_wav, expect_ok, timed
from benchmarks.report import Result, Table, cli, fmt_ms, percentile, summary_ms

NAME = "voice_cache"
TEXT = "Hello there."
REFERENCE_TEXT = (
    "Please call Stella. Ask her to bring these things with her from the store: six spoons of fresh snow "
    "peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob."
)
SHORT_MODEL_ID = "tiny-xtts-short"
SHORT_MODEL_TOKENS = 16
TARGET_SPEEDUP = 2.0
SAMPLE_RATE = 24000


def _latents_computed(client: Any) -> int:
    return int(expect_ok(client.get("/health/engines")).json()["TTSDeployment"]["latents_computed"])


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    """Compare stored-voice and uploaded-reference requests; writes ``<out_dir>/voice_cache.json``."""
    import soundfile

    from voice_core.tiny import TINY_MODEL_ID, TinyModelSpec

    rounds = 2 if quick else 10
    models = {TINY_MODEL_ID: 80, SHORT_MODEL_ID: SHORT_MODEL_TOKENS}
    result = Result(
        NAME,
        quick,
        config={
            "rounds": rounds,
            "text": TEXT,
            "seed": SEED,
            "do_sample": False,
            "format": "pcm",
            "models": {model: {"max_audio_tokens": tokens} for model, tokens in models.items()},
        },
    )
    extra = {SHORT_MODEL_ID: TinyModelSpec(gpt_max_audio_tokens=SHORT_MODEL_TOKENS)}
    times: dict[str, dict[str, list[float]]] = {}
    audio_s: dict[str, float] = {}
    cache_checks: dict[str, int] = {}
    with bench_service(extra_models=extra) as bench, bench.service.client() as client:
        reference = espeak_wav(bench.work / "reference.wav", REFERENCE_TEXT)
        reference_bytes = reference.read_bytes()
        result.config["reference"] = {
            "seconds": round(soundfile.info(str(reference)).duration, 2),
            "bytes": len(reference_bytes),
            "text": REFERENCE_TEXT,
        }
        create_s, response = timed(
            client.post,
            "/voices",
            data={"name": "benchmark voice", "language": "en"},
            files={"files": ("reference.wav", reference_bytes, "audio/wav")},
        )
        voice_id = expect_ok(response).json()["id"]
        result.metrics["create_voice_ms"] = round(create_s * 1000, 1)

        def stored(model: str) -> bytes:
            body = {"text": TEXT, "voice": voice_id, "model": model, "seed": SEED, "do_sample": False, "format": "pcm"}
            return expect_ok(client.post("/tts", json=body)).content

        def uploaded(model: str) -> bytes:
            form = {"text": TEXT, "model": model, "seed": str(SEED), "do_sample": "false", "format": "pcm"}
            files = {"reference": ("reference.wav", reference_bytes, "audio/wav")}
            return expect_ok(client.post("/tts", data=form, files=files)).content

        for model in models:
            audio_s[model] = len(stored(model)) / 2 / SAMPLE_RATE  # warm-up; caches this model's latents
            uploaded(model)
            before = _latents_computed(client)
            times[model] = {"stored": [], "uploaded": []}
            for index in range(rounds):
                order = (stored, uploaded) if index % 2 == 0 else (uploaded, stored)
                for fn in order:
                    seconds, _ = timed(fn, model)
                    times[model][fn.__name__].append(seconds)
            cache_checks[model] = _latents_computed(client) - before

    table = Table(
        "POST /tts with a stored voice vs the reference uploaded each time (ms)",
        ["model (audio tokens)", "audio s", "stored p50", "stored p95", "uploaded p50", "uploaded p95",
         "upload adds (p50)", "speed-up", "target"],
    )  # fmt: skip
    result.metrics["models"] = {}
    for model, tokens in models.items():
        stored_s, uploaded_s = times[model]["stored"], times[model]["uploaded"]
        speedup = percentile(uploaded_s, 50) / percentile(stored_s, 50)
        added_ms = (percentile(uploaded_s, 50) - percentile(stored_s, 50)) * 1000
        result.metrics["models"][model] = {
            "max_audio_tokens": tokens,
            "audio_seconds": round(audio_s[model], 3),
            "stored_ms": summary_ms(stored_s),
            "uploaded_ms": summary_ms(uploaded_s),
            "speedup_p50": round(speedup, 3),
            "upload_added_ms_p50": round(added_ms, 1),
            "latents_computed_by_stored_requests": cache_checks[model],
        }
        stats = result.metrics["models"][model]
        check = result.check(f"stored-voice speed-up: {model}", speedup, TARGET_SPEEDUP, "x", at_most=False)
        table.add(
            f"{model} ({tokens})",
            f"{audio_s[model]:.2f}",
            fmt_ms(stats["stored_ms"]["p50_ms"]),
            fmt_ms(stats["stored_ms"]["p95_ms"]),
            fmt_ms(stats["uploaded_ms"]["p50_ms"]),
            fmt_ms(stats["uploaded_ms"]["p95_ms"]),
            fmt_ms(added_ms),
            f"{speedup:.2f}x",
            "PASS" if check["passed"] else "FAIL",
        )
    result.tables.append(table)
    recomputed = {model: n for model, n in cache_checks.items() if n}
    result.notes += [
        f"{rounds} interleaved rounds per model after one warm-up of each form; text {TEXT!r}, seed {SEED}, "
        f"greedy decoding, pcm output; reference: {result.config['reference']['seconds']} s espeak-ng WAV "
        f"({len(reference_bytes)} bytes) sent as multipart field 'reference'.",
        f"Storing the voice (POST /voices, latents computed once): {result.metrics['create_voice_ms']:.0f} ms.",
        "'upload adds' is the per-request cost of sending, decoding and computing latents for the reference; "
        "the speed-up divides it into the synthesis time, so it depends on how long the answer is.",
        f"{SHORT_MODEL_ID} is the tiny model limited to {SHORT_MODEL_TOKENS} audio tokens, standing for a short "
        "answer (the default tiny model always speaks 80 tokens, ~3.6 s, whatever the text).",
        "Stored-voice requests recomputed no latents (GET /health/engines latents_computed unchanged)."
        if not recomputed
        else f"Stored-voice requests recomputed latents: {recomputed} (the cache did not hold).",
    ]
    return result.finish(out_dir)


if __name__ == "__main__":
    raise SystemExit(cli(NAME, run))
