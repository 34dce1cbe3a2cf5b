"""Benchmarks of the voice service: scripts that print a table and write JSON.

Run all or some with ``python -m benchmarks [--quick] [names...]``, or one alone with
``python -m benchmarks.<name> [--quick]``. Results go to ``benchmarks/results/`` (git-ignored).
"""

# name -> what it measures; each is the module benchmarks.<name> with run(out_dir, quick) -> dict.
BENCHMARKS: dict[str, str] = {
    "serving_overhead": "latency HTTP + Serve add to one synthesis, vs the engine in-process",
    "streaming_ttfb": "time to first audio byte vs total time for ~300 characters",
    "voice_cache": "stored voice (cached latents) vs reference audio uploaded with every request",
    "throughput": "requests/s and latency with 1, 4 and 16 concurrent clients",
    "batching": "audio s per wall s and p95 latency with 1-16 concurrent requests: batched vs unbatched decoding",
    "data_prep_throughput": "audio s per wall s: Ray Data pipeline vs a sequential loop",
    "voice_eval_throughput": "quality scoring, clips per s: Ray Data pipeline (ASR + encoder actors) vs a loop",
    "gpu_realsize": "release-size XTTS (random weights): real-time factor, time to first audio on CUDA (else skips)",
    "training_step": "peak memory and time of one XTTS GPT training step: LoRA vs full",
}
