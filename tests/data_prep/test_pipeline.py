"""The whole pipeline on the session Ray with the real tiny.en model (offline): espeak-ng speech of a
main voice (wav + flac), a second espeak voice, noise, a corrupt WAV and a text file.
"""

from __future__ import annotations

import json
import re
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.cli import main
from data_prep.config import BuildConfig, ResourceOptions
from data_prep.export import cut_source
from data_prep.normalize import normalize_text
from data_prep.pipeline import build_dataset
from data_prep.records import BuildReport
from data_prep.runtime import MIN_TRANSCRIBE_CPUS, place_transcribers
from tests.data_prep.corpus import MAIN_A, MORE, SAMPLE_RATE, Corpus, make_corpus, speak_recording
from voice_core.errors import ConfigError

pytestmark = pytest.mark.slow

# Fractions: the session Ray has 4 logical CPUs on a 2-core machine, shared with other tests.
RESOURCES = ResourceOptions(
    segment_num_cpus=0.25,
    transcribe_num_cpus=1.0,
    transcribe_batch_size=4,
    analyze_num_cpus=0.25,
    export_num_cpus=0.25,
)
CONFIG = BuildConfig(resources=RESOURCES)
MAX_WER = 0.15


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference length."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, hyp_word in enumerate(hyp, 1):
            current = min(row[j] + 1, row[j - 1] + 1, previous + (ref_word != hyp_word))
            previous, row[j] = row[j], current
    return row[-1] / max(1, len(ref))


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", normalize_text(text, "en").lower()).split())


def test_wer_helper() -> None:
    assert wer("a b c d", "a b c d") == 0
    assert wer("a b c d", "a x c") == 0.5
    assert wer("a b", "a b c d") == 1.0


@dataclass
class Built:
    corpus: Corpus
    out: Path
    report: BuildReport
    clips: list[dict]


@pytest.fixture(scope="module")
def built(ray_session: int, tmp_path_factory: pytest.TempPathFactory) -> Built:
    corpus = make_corpus(tmp_path_factory.mktemp("recordings"))
    out = tmp_path_factory.mktemp("dataset") / "voice"
    report = build_dataset([str(corpus.root)], out, CONFIG, cache_dir=out.parent / "cache", progress=False)
    clips = json.loads((out / "clips.json").read_text())
    return Built(corpus, out, report, clips)


def test_sources_are_reported_with_reasons(built: Built) -> None:
    status = {s.source_id: (s.status, s.reason) for s in built.report.sources}
    assert set(status) == {"main_a", "main_b", "other", "noise", "broken", "notes"}
    assert status["main_a"][0] == status["main_b"][0] == status["other"][0] == "processed"
    assert status["broken"][0] == "error" and "not a recognised audio file" in status["broken"][1]
    assert status["notes"][0] == "unsupported" and "not an audio file" in status["notes"][1]
    assert status["noise"][0] == "no_speech"  # pure noise: the VAD finds nothing to cut
    manifest = json.loads((built.out / "manifest.json").read_text())
    assert manifest["model"]["requested"] == "tiny.en"
    assert manifest["source_counts"] == {"error": 1, "no_speech": 1, "processed": 3, "unsupported": 1}
    assert manifest["kept"] == built.report.kept and manifest["kept_duration_s"] > 20
    assert {"ingest", "analysis", "transcribe_busy", "export", "total"} <= set(manifest["timings_s"])


def test_main_voice_kept_second_voice_rejected(built: Built) -> None:
    by_source: dict[str, list[dict]] = {}
    for clip in built.clips:
        by_source.setdefault(clip["source_id"], []).append(clip)
    assert len(by_source["main_a"]) == 6 and len(by_source["main_b"]) == 4  # one clip per sentence
    assert all(clip["kept"] for clip in by_source["main_a"] + by_source["main_b"])
    other = by_source["other"]
    assert other and all(clip["reasons"] == ["speaker_mismatch"] for clip in other)
    assert built.report.rejected_by_reason == {"speaker_mismatch": len(other)}
    assert max(c["speaker_similarity"] for c in other) < min(
        c["speaker_similarity"] for c in by_source["main_a"] + by_source["main_b"]
    )


def test_clips_fit_the_window_and_cuts_fall_in_silence(built: Built) -> None:
    seg = CONFIG.segment
    for clip in built.clips:
        if not clip["kept"]:
            continue
        assert seg.min_clip_s <= clip["duration_s"] <= seg.max_clip_s
        source = built.corpus.root / ("main_b.flac" if clip["source_id"] == "main_b" else f"{clip['source_id']}.wav")
        audio, rate = sf.read(source, dtype="float32")
        level = 10 * np.log10(np.mean(audio[int(clip["start_s"] * rate) : int(clip["end_s"] * rate)] ** 2))
        for cut in (clip["start_s"], clip["end_s"]):
            around = audio[max(0, int((cut - 0.01) * rate)) : int((cut + 0.01) * rate)]
            cut_level = 10 * np.log10(np.mean(around**2) + 1e-12)
            assert cut_level < level - 30, f"{clip['id']}: cut at {cut} s is {cut_level:.1f} dB (clip {level:.1f} dB)"
        # The cuts also lie outside every sentence espeak spoke.
        for start, end in built.corpus.spans[clip["source_id"]]:
            assert not start + 0.05 < clip["start_s"] < end - 0.05
            assert not start + 0.05 < clip["end_s"] < end - 0.05


def test_transcripts_of_clean_speech(built: Built) -> None:
    for stem in ("main_a", "main_b"):
        reference = _words(" ".join(built.corpus.texts[stem]))
        hypothesis = _words(" ".join(c["text"] for c in built.clips if c["source_id"] == stem))
        assert wer(reference, hypothesis) <= MAX_WER, (reference, hypothesis)


def test_ljspeech_layout(built: Built) -> None:
    out = built.out
    lines = (out / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == built.report.kept == 10
    ids = []
    for line in lines:
        clip_id, text, normalized = line.split("|")
        assert re.fullmatch(r"main_[ab]-\d{5}", clip_id) and text and normalized
        ids.append(clip_id)
        with wave.open(str(out / "wavs" / f"{clip_id}.wav")) as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
            assert 1.0 <= wav.getnframes() / 22050 <= 11.6
    assert ids == sorted(ids)
    assert sorted(p.stem for p in (out / "wavs").glob("*.wav")) == ids
    train = (out / "metadata_train.csv").read_text(encoding="utf-8").splitlines()
    evaluation = (out / "metadata_eval.csv").read_text(encoding="utf-8").splitlines()
    assert sorted(train + evaluation) == lines and evaluation and not set(train) & set(evaluation)
    assert sorted(p.name for p in (out / "sources").glob("*.completed")) == [
        "main_a.completed",
        "main_b.completed",
        "noise.completed",
        "other.completed",
    ]


def test_wavs_written_by_the_analysis_match_a_cut_from_the_recording(built: Built, tmp_path: Path) -> None:
    # The analysis writes each clip from its window; the export's fallback cuts the whole recording.
    for clip in [c for c in built.clips if c["kept"]][:3]:
        source = built.corpus.root / ("main_b.flac" if clip["source_id"] == "main_b" else f"{clip['source_id']}.wav")
        assert cut_source(str(source), [(clip["id"], clip["start_s"], clip["end_s"])], str(tmp_path), 22050) == {}
        written = (built.out / "wavs" / f"{clip['id']}.wav").read_bytes()
        assert (tmp_path / f"{clip['id']}.wav").read_bytes() == written


def test_rerun_is_byte_identical_and_new_recordings_append(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the CLI reads settings (and .env) from the working directory
    out = built.out
    files = ("metadata.csv", "metadata_train.csv", "metadata_eval.csv", "clips.json")
    before = {name: (out / name).read_bytes() for name in files}
    wavs = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "wavs").glob("*.wav")}

    # Analyse everything again from scratch: same bytes.
    report = build_dataset([str(built.corpus.root)], out, CONFIG, cache_dir=tmp_path, progress=False, redo=True)
    assert {s.source_id: s.status for s in report.sources}["main_a"] == "processed"
    assert {name: (out / name).read_bytes() for name in files} == before
    assert {p.name: p.read_bytes() for p in (out / "wavs").glob("*.wav")} == {k: v[0] for k, v in wavs.items()}
    wavs = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").glob("*.wav")}

    # A new recording through the CLI: only it is analysed; earlier clips stay as they were.
    extra = tmp_path / "more"
    extra.mkdir()
    speak_recording(extra / "more.wav", MORE, seed=9)
    shutil.copy(built.corpus.root / "main_a.wav", extra / "main_a.wav")  # given again: skipped
    argv = ["build", "-i", str(extra), "-o", str(out), "-l", "en", "--no-progress"]
    argv += ["--segment-num-cpus", "0.25", "--analyze-num-cpus", "0.25", "--set", "resources.export_num_cpus=0.25"]
    assert main(argv) == 0
    summary = capsys.readouterr().out
    assert "clips kept" in summary and "more" in summary
    manifest = json.loads((out / "manifest.json").read_text())
    status = {s["source_id"]: s["status"] for s in manifest["sources"]}
    assert status == {
        "main_a": "skipped",
        "main_b": "skipped",
        "noise": "skipped",
        "other": "skipped",
        "more": "processed",
    }
    lines = (out / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert set(before["metadata.csv"].decode().splitlines()) <= set(lines)
    assert len([line for line in lines if line.startswith("more-")]) == len(MORE)
    assert all(p.stat().st_mtime_ns == wavs[p.name] for p in (out / "wavs").glob("*.wav") if p.name in wavs)

    # And once more with nothing new: nothing changes.
    after_append = (out / "metadata.csv").read_bytes()
    report = build_dataset([str(extra)], out, CONFIG, cache_dir=tmp_path, progress=False)
    assert report.timings_s.get("analysis") is None
    assert (out / "metadata.csv").read_bytes() == after_append


def test_recordings_with_too_many_channels_are_unreadable_and_the_build_goes_on(
    ray_session: int, tmp_path: Path
) -> None:
    inputs = tmp_path / "recordings"
    inputs.mkdir()
    speak_recording(inputs / "good.wav", MAIN_A[:3], seed=1)
    speech, _ = speak_recording(tmp_path / "speech.wav", MORE, seed=2)
    mono, _ = sf.read(speech, dtype="float32")
    for channels in (8, 12):  # 7.1 is accepted (it crashed the decoder before), 12 is over the limit
        frames = np.repeat(mono[:, None], channels, axis=1)
        sf.write(inputs / f"surround_{channels}.wav", frames, SAMPLE_RATE, subtype="PCM_16")

    out = tmp_path / "dataset"
    report = build_dataset([str(inputs)], out, CONFIG, cache_dir=tmp_path / "cache", progress=False)

    status = {s.source_id: (s.status, s.reason) for s in report.sources}
    assert status["good"][0] == "processed"
    assert status["surround_8"][0] == "processed"
    assert status["surround_12"][0] == "error"
    assert "12 channels; at most 8 are accepted" in status["surround_12"][1]
    kept = {clip["source_id"] for clip in json.loads((out / "clips.json").read_text()) if clip["kept"]}
    assert kept == {"good", "surround_8"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source_counts"] == {"error": 1, "processed": 2}


def test_placement_shares_the_free_cpus_among_the_transcribers(ray_session: int) -> None:
    import ray

    free = float(ray.available_resources().get("CPU", 0))
    placement = place_transcribers(BuildConfig())
    expected = max(MIN_TRANSCRIBE_CPUS, round(min(free - 0.5, float(ray.cluster_resources()["CPU"])), 4))
    assert (placement.device, placement.compute_type, placement.num_gpus) == ("cpu", "int8", 0.0)
    assert placement.num_cpus == expected and placement.cpu_threads == 1
    assert placement.workers == max(1, int(expected + 0.5))
    two = place_transcribers(BuildConfig(resources=ResourceOptions(transcribe_pool_size=2)))
    assert two.num_cpus == max(MIN_TRANSCRIBE_CPUS, round((free - 0.5) / 2, 4))
    explicit = place_transcribers(CONFIG)
    assert (explicit.num_cpus, explicit.workers) == (1.0, 1)
    with pytest.raises(ConfigError, match=r"need 8\.5 CPUs"):
        place_transcribers(BuildConfig(resources=ResourceOptions(transcribe_num_cpus=8.0)))


def test_parallel_decoding_workers_give_the_same_results(built: Built) -> None:
    from data_prep.segment import SegmentStage
    from data_prep.transcribe import TranscribeStage, resolve_model

    segments = SegmentStage(CONFIG.segment)(
        {"source_id": np.array(["main_a"]), "path": np.array([str(built.corpus.root / "main_a.wav")])}
    )
    model = resolve_model("tiny.en", built.out.parent / "cache")
    outputs = []
    for workers in (1, 2):
        stage = TranscribeStage(str(model.path), CONFIG.transcribe, CONFIG.segment, "cpu", "int8", 1, workers)
        batch = stage({key: value.copy() for key, value in segments.items()})
        outputs.append({key: batch[key].tolist() for key in ("index", "text", "avg_logprob", "words", "start_s")})
    assert len(outputs[0]["text"]) == len(MAIN_A) and outputs[0] == outputs[1]
