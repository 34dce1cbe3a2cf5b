"""Scoring a set: bad input refused before compute; the Ray Data pipeline equals the sequential loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.voice_eval.conftest import PIPER, SENTENCES, SR, Corpus
from voice_core.decode import decode_audio
from voice_core.errors import ConfigError, InvalidInputError
from voice_eval import pipeline, stages
from voice_eval.__main__ import main
from voice_eval.pipeline import EvalItem, score_clips, score_clips_sequential
from voice_eval.score import Samples


@pytest.fixture
def no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("compute started for bad input")

    monkeypatch.setattr(pipeline, "ensure_ray", fail)
    monkeypatch.setattr(stages.asr, "load_asr", fail)
    monkeypatch.setattr(stages.similarity, "load_encoder", fail)
    monkeypatch.setattr(stages, "decode_row", fail)


@pytest.mark.usefixtures("no_compute")
def test_language_the_asr_model_lacks_is_refused_before_compute(speech_wav: Path) -> None:
    items = [
        EvalItem(speech_wav, "hello there", "en", speech_wav),
        EvalItem(speech_wav, "olá, tudo bem", "pt", speech_wav, id="greeting"),
    ]
    for run in (score_clips, score_clips_sequential):
        with pytest.raises(InvalidInputError, match=r"item 'greeting'.*'tiny.en' is English only.*'pt'.*base"):
            run(items, asr_model="tiny.en")
    with pytest.raises(InvalidInputError, match=r"item '0'.*'xx' is not one Whisper"):
        score_clips([EvalItem(speech_wav, "hello", "xx", speech_wav)])
    with pytest.raises(InvalidInputError, match="no clips"):
        score_clips([])


@pytest.mark.usefixtures("no_compute")
def test_score_set_cli_refuses_bad_input_with_exit_2(
    capsys: pytest.CaptureFixture[str], speech_wav: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "set.json"
    manifest.write_text(
        json.dumps(
            {"language": "pt", "reference": str(speech_wav), "clips": [{"clip": str(speech_wav), "text": "bom dia"}]}
        )
    )
    assert main(["score-set", "--manifest", str(manifest), "--out", str(tmp_path / "out")]) == 2
    assert "English only" in capsys.readouterr().err
    manifest.write_text(json.dumps([{"clip": "a.wav", "txt": "x"}]))
    assert main(["score-set", "--manifest", str(manifest), "--out", str(tmp_path / "out")]) == 2
    assert "manifest entry 0 has unknown keys ['txt']" in capsys.readouterr().err
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.wav").write_bytes(speech_wav.read_bytes())
    argv = ["score-set", "--dir", str(tmp_path / "clips"), "--language", "en", "--reference", str(speech_wav)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert "has no text file 'a.txt'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _items(corpus: Corpus) -> list[EvalItem]:
    reference = corpus.clips[PIPER][0]
    items = [EvalItem(corpus.clips[PIPER][i], SENTENCES[i], "en", reference, id=f"piper-{i}") for i in (1, 2)]
    items.append(EvalItem(corpus.clips["en-us"][3], SENTENCES[3], "en", reference, id="espeak-3"))
    # Synthesised audio arrives as samples (at 22.05 kHz here), the reference as file bytes.
    samples = decode_audio(corpus.clips["en-us+f2"][4], 22050)
    items.append(EvalItem(Samples(samples, 22050), SENTENCES[4], "en", reference.read_bytes(), id="samples-4"))
    items.append(EvalItem(Samples(np.zeros(SR, np.float32), SR), SENTENCES[5], "en", reference, id="silent"))
    items.append(EvalItem(b"not audio at all", SENTENCES[1], "en", reference, id="garbage"))
    return items


@pytest.mark.slow
def test_pipeline_scores_equal_the_sequential_loop(corpus: Corpus, ray_session: int) -> None:
    items = _items(corpus)
    sequential = [clip.to_dict() for clip in score_clips_sequential(items)]
    piped = [clip.to_dict() for clip in score_clips(items)]
    assert piped == sequential
    by_id = {clip["id"]: clip for clip in piped}
    assert [clip["id"] for clip in piped] == [item.id for item in items]
    assert by_id["piper-1"]["wer"] <= 0.1 and by_id["piper-1"]["similarity"] > 0.85
    assert by_id["samples-4"]["similarity"] < by_id["piper-2"]["similarity"]
    assert by_id["silent"]["flags"] == ["silent", "unintelligible"] and by_id["silent"]["similarity"] == 0.0
    assert "cannot be decoded" in by_id["garbage"]["error"] and "wer" not in by_id["garbage"]


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_pools_larger_than_the_cluster_are_refused(speech_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "_pipeline_rows", lambda *a: pytest.fail("the pipeline started"))
    options = pipeline.PipelineOptions(asr_pool_size=8)
    with pytest.raises(ConfigError, match=r"needs 6.5 CPUs \(ASR 8x0.75.*has 4"):
        score_clips([EvalItem(speech_wav, "hello there", "en", speech_wav)], options=options)


@pytest.mark.slow
def test_score_set_writes_the_report(corpus: Corpus, ray_session: int, tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in (1, 2):
        (folder / f"c{i}.wav").write_bytes(corpus.clips[PIPER][i].read_bytes())
        (folder / f"c{i}.txt").write_text(SENTENCES[i])
    argv = ["--dir", str(folder), "--language", "en", "--reference", str(corpus.clips[PIPER][0])]
    assert main(["score-set", *argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["summary"]["scored"] == 2 and data["summary"]["run"]["path"] == "ray_data"
    assert [clip["id"] for clip in data["clips"]] == ["c1", "c2"]
    assert data["summary"]["metrics"]["similarity"]["n"] == 2
    assert "2 of 2 clips scored" in (tmp_path / "out" / "report.txt").read_text()
