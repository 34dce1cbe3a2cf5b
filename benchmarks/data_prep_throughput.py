"""Data-prep throughput: the Ray Data pipeline against a plain sequential loop on the same input.

Input: espeak-ng recordings (one voice, sentences separated by pauses, a -60 dBFS noise floor); every
sentence is different, so the duplicate-text filter has nothing to reject and the kept count checks
the whole pipeline. Both paths use faster-whisper tiny.en (int8 on CPU) with the same decoding
options.

* sequential: for each file, decode to 16 kHz -> Silero VAD + clip planning -> faster-whisper per
  clip (word timestamps) -> decode at 22.05 kHz and write the clips and ``metadata.csv``; one
  process, the model loaded once with one CTranslate2 thread per core.
* pipeline: ``data_prep.pipeline.build_dataset`` with its default resources on a private local Ray
  of all cores: the same steps as Ray Data actor pools, plus word-safe cut refinement,
  SNR/clipping/speech-ratio measurements, speaker embeddings, the filters and the manifest.

The two paths run in alternating rounds (the machine is shared, so its load drifts). The figure of
merit is audio seconds processed per wall second. Stage times of the pipeline are busy seconds
summed over its actors and decoding workers (stages overlap, so they do not add up to the wall time).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import espeak_wav, private_ray
from benchmarks.report import Result, Table, cli

NAME = "data_prep_throughput"
WORKER_NICENESS = "RAY_worker_niceness"
# 6 x 10 pairs give 60 different sentences, each said once.
SUBJECTS = [
    "The old farmer",
    "My younger sister",
    "A tired student",
    "Our new neighbour",
    "The quiet librarian",
    "His best friend",
]
ACTIONS = [
    "painted the kitchen door",
    "carried the heavy boxes upstairs",
    "planted tomatoes in the garden",
    "read a long letter aloud",
    "fixed the broken bicycle",
    "baked fresh bread for everyone",
    "walked the dog along the river",
    "cleaned all the windows",
    "sold the red car",
    "watched the evening news",
]
WHEN = ["on Monday morning", "after the storm", "before lunch", "last summer", "in the afternoon"]
RATE = 22050
BEAM_SIZE = 5


def sentence(number: int) -> str:
    """The ``number``-th benchmark sentence (different for 0..59)."""
    subject = SUBJECTS[number % len(SUBJECTS)]
    action = ACTIONS[(number // len(SUBJECTS)) % len(ACTIONS)]
    return f"{subject} {action} {WHEN[number % len(WHEN)]}."


def make_inputs(folder: Path, recordings: int, sentences: int) -> float:
    """Write ``recordings`` WAVs of ``sentences`` sentences each; return their total seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    import soundfile

    total = 0.0
    for index in range(recordings):
        pieces = [np.zeros(int(0.4 * RATE), np.float32)]
        for k in range(sentences):
            wav, _ = soundfile.read(espeak_wav(folder / "tmp.wav", sentence(index * sentences + k)), dtype="float32")
            pieces += [wav, np.zeros(int((0.6 + 0.1 * (k % 3)) * RATE), np.float32)]
        audio = np.concatenate(pieces)
        audio += 1e-3 * np.random.default_rng(index).standard_normal(audio.size).astype(np.float32)
        soundfile.write(str(folder / f"talk{index:02d}.wav"), audio, RATE, subtype="PCM_16")
        total += audio.size / RATE
    (folder / "tmp.wav").unlink()
    return total


def sequential(inputs: Path, out: Path, model_path: Path, threads: int) -> dict[str, float]:
    """The plain loop; returns seconds per stage (and the model load)."""
    from faster_whisper import WhisperModel

    from data_prep.config import SegmentOptions
    from data_prep.segment import detect_speech, plan_clips
    from voice_core.decode import decode_audio
    from voice_core.encode import write_wav

    options = SegmentOptions()
    times = dict.fromkeys(("model_load", "decode", "vad", "transcribe", "write"), 0.0)
    started = time.perf_counter()
    model = WhisperModel(str(model_path), device="cpu", compute_type="int8", cpu_threads=threads)
    times["model_load"] = time.perf_counter() - started
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    for path in sorted(inputs.glob("*.wav")):
        mark = time.perf_counter()
        audio = decode_audio(path, 16000)
        times["decode"] += time.perf_counter() - mark
        mark = time.perf_counter()
        clips = plan_clips(detect_speech(audio, options), audio.size / 16000, options)
        times["vad"] += time.perf_counter() - mark
        texts = []
        for clip in clips:
            mark = time.perf_counter()
            window = audio[round(clip.window_start_s * 16000) : round(clip.window_end_s * 16000)]
            segments, _ = model.transcribe(
                window,
                language="en",
                beam_size=BEAM_SIZE,
                temperature=[0.0],
                word_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            texts.append(" ".join(seg.text.strip() for seg in segments))
            times["transcribe"] += time.perf_counter() - mark
        mark = time.perf_counter()
        full = decode_audio(path, RATE)
        for clip, text in zip(clips, texts, strict=True):
            clip_id = f"{path.stem}-{clip.index:05d}"
            write_wav(
                out / "wavs" / f"{clip_id}.wav",
                full[round(clip.window_start_s * RATE) : round(clip.window_end_s * RATE)],
                RATE,
            )
            lines.append(f"{clip_id}|{text}|{text}\n")
        times["write"] += time.perf_counter() - mark
    (out / "metadata.csv").write_text("".join(lines), encoding="utf-8")
    times["clips"] = float(len(lines))
    return times


@contextlib.contextmanager
def _worker_niceness(value: int) -> Iterator[None]:
    """Set ``RAY_worker_niceness`` for the Ray started inside the block."""
    saved = os.environ.get(WORKER_NICENESS)
    os.environ[WORKER_NICENESS] = str(value)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(WORKER_NICENESS, None)
        else:
            os.environ[WORKER_NICENESS] = saved


def _pipeline(inputs: Path, out: Path, cache: Path, cores: int) -> tuple[Any, float, float]:
    """One build on a fresh private Ray; returns the report, its wall seconds and ``ray.init``'s."""
    from data_prep.config import BuildConfig
    from data_prep.pipeline import build_dataset

    started = time.perf_counter()
    # Ray runs its workers at niceness 15 and the driver at 0. On a machine that other work shares,
    # the actors would then get less CPU than the sequential loop (niceness 0) for that reason
    # alone; both paths run at the same priority here.
    with _worker_niceness(os.getpriority(os.PRIO_PROCESS, 0)), private_ray(num_cpus=cores):
        ray_init = time.perf_counter() - started
        mark = time.perf_counter()
        report = build_dataset([str(inputs)], out, BuildConfig(), cache_dir=cache, progress=False)
        return report, time.perf_counter() - mark, ray_init


def run(out_dir: Path, quick: bool) -> dict[str, Any]:
    """Time both paths on the same recordings; writes ``<out_dir>/data_prep_throughput.json``."""
    from data_prep.config import ResourceOptions
    from data_prep.transcribe import resolve_model

    cores = os.cpu_count() or 1
    recordings, sentences = (2, 5) if quick else (6, 10)
    rounds = 1 if quick else 2
    result = Result(
        NAME,
        quick,
        config={
            "recordings": recordings,
            "sentences_per_recording": sentences,
            "rounds": rounds,
            "model": "tiny.en (int8, CPU)",
            "beam_size": BEAM_SIZE,
            "sequential_threads": cores,
            "ray_cpus": cores,
            "pipeline_resources": ResourceOptions().__dict__,
        },
    )
    seq_walls: list[float] = []
    pipe_walls: list[float] = []
    with tempfile.TemporaryDirectory(prefix="avs-dp-bench-") as tmp:
        work = Path(tmp)
        audio_s = make_inputs(work / "in", recordings, sentences)
        model = resolve_model("tiny.en", work / "cache")
        for number in range(rounds):
            started = time.perf_counter()
            seq = sequential(work / "in", work / f"seq{number}", model.path, cores)
            seq_walls.append(time.perf_counter() - started)
            report, pipe_wall, ray_init = _pipeline(work / "in", work / f"ds{number}", work / "cache", cores)
            pipe_walls.append(pipe_wall)
    ratios = [s / p for s, p in zip(seq_walls, pipe_walls, strict=True)]
    seq_wall, pipe_wall = statistics.mean(seq_walls), statistics.mean(pipe_walls)
    ratio = statistics.mean(ratios)
    t = report.timings_s  # the last round's
    result.metrics = {
        "audio_s": round(audio_s, 2),
        "speedup": round(ratio, 3),
        "speedup_per_round": [round(r, 3) for r in ratios],
        "sequential": {
            "wall_s": [round(w, 2) for w in seq_walls],
            "audio_s_per_wall_s": round(audio_s / seq_wall, 3),
            "stages_s": {k: round(v, 3) for k, v in seq.items() if k != "clips"},
            "clips": int(seq["clips"]),
        },
        "pipeline": {
            "wall_s": [round(w, 2) for w in pipe_walls],
            "ray_init_s": round(ray_init, 2),
            "audio_s_per_wall_s": round(audio_s / pipe_wall, 3),
            "audio_s_per_wall_s_with_ray_init": round(audio_s / (pipe_wall + ray_init), 3),
            "timings_s": {k: round(v, 3) for k, v in t.items()},
            "placement": report.placement,
            "clips": report.clips,
            "kept": report.kept,
            "rejected_by_reason": report.rejected_by_reason,
        },
    }
    result.check(
        "pipeline / sequential throughput",
        ratio,
        1.0,
        "x",
        at_most=False,
        uncertainty=(max(ratios) - min(ratios)) / 2 if len(ratios) > 1 else None,
    )
    table = Table(
        f"Throughput on {audio_s:.1f} s of audio ({recordings} recordings; mean of {rounds} alternating rounds)",
        ["path", "wall s", "audio s / wall s", "clips", "setup s"],
    )
    table.add(
        "sequential loop",
        f"{seq_wall:.1f}",
        f"{audio_s / seq_wall:.2f}",
        int(seq["clips"]),
        f"{seq['model_load']:.1f} (model)",
    )
    rejected = ", ".join(f"{reason} {count}" for reason, count in report.rejected_by_reason.items())
    table.add(
        "Ray Data pipeline",
        f"{pipe_wall:.1f}",
        f"{audio_s / pipe_wall:.2f}",
        f"{report.kept}/{report.clips} kept" + (f" (rejected: {rejected})" if rejected else ""),
        f"{ray_init:.1f} (ray.init)",
    )
    p = report.placement
    workers = f"{p.get('workers', 1)} worker(s) x {p.get('cpu_threads', 1)} thread(s)"
    stages = Table(
        "Stage seconds of the last round (sequential: wall; pipeline: busy time summed over actors and workers)",
        ["stage", "sequential", "pipeline"],
    )
    rows = [
        ("decode 16 kHz (pipeline: + 22.05 kHz)", seq["decode"], t.get("decode_busy")),
        ("VAD + clip planning", seq["vad"], t.get("vad_busy")),
        (f"faster-whisper (+ cut refinement; pipeline: {workers})", seq["transcribe"], t.get("transcribe_busy")),
        ("measurements + speaker embedding", None, t.get("analyze_busy")),
        ("until the first analysed clip (actor start, model loads)", seq["model_load"], t.get("analysis_first_clip")),
        ("analysis wall (all of the above, overlapped)", None, t.get("analysis")),
        ("filters", None, t.get("filter")),
        ("decode 22.05 kHz, cut + write WAVs (pipeline: in the analysis)", seq["write"], t.get("write_busy")),
        ("export: remove rejected WAVs, metadata, splits", None, t.get("export")),
        ("total wall", seq_walls[-1], t.get("total")),
    ]
    for name, a, b in rows:
        stages.add(name, "-" if a is None else f"{a:.2f}", "-" if b is None else f"{b:.2f}")
    result.tables += [table, stages]
    result.notes += [
        f"{cores} CPU cores; the sequential loop gives CTranslate2 {cores} threads in one process. The pipeline "
        f"(default resources) runs {p.get('workers', 1)} decoding worker(s) of {p.get('cpu_threads', 1)} thread(s) "
        f"in one transcriber actor reserving {p.get('num_cpus', 0):g} CPUs, next to decode/VAD and analysis actors "
        "reserving 0.25 CPU each. For tiny.en on short clips two 1-thread workers transcribe ~1.3-1.7x faster than "
        "one 2-thread worker, which is where the pipeline's gain comes from.",
        "The pipeline does more than the loop: word-safe cut refinement, SNR/clipping/speech-ratio measurements, "
        "Resemblyzer speaker embeddings, the filters, train/eval splits and the manifest; and its wall time "
        "includes starting the actors and loading the models in them (the 'first analysed clip' row).",
        "Every sentence of the input is different. With repeated sentences the duplicate_text filter rejects every "
        "repeat after the first (as it should: a fine-tuning set gains nothing from the same text twice); an earlier "
        "version of this benchmark cycled 12 sentences over 60 clips and so kept 15 of 60 (12 first sayings plus 3 "
        "repeats that Whisper transcribed differently).",
        "The machine is shared with other work: compare the load averages in the header; the uncertainty of the "
        "check is half the spread of the per-round ratios. Ray renices its workers to 15 by default, which on a "
        "loaded machine alone makes any Ray pipeline lose to a loop at niceness 0; the benchmark starts its Ray with "
        "RAY_worker_niceness equal to its own niceness so both paths compete for the CPU alike.",
        "Quick runs are dominated by fixed costs (Ray actors, model loads); throughput grows with the input.",
    ]
    return result.finish(out_dir)


if __name__ == "__main__":
    raise SystemExit(cli(NAME, run))
