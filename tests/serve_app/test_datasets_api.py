"""Datasets over HTTP: a real build of espeak-ng speech with tiny.en, append, conflicts and bad input.

The session's Ray runs without a dashboard, so builds there run as a detached Ray actor
(``ray_task``); the Jobs API path (``ray_job``) is checked against a fake Jobs client.
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import sys
import time
import wave
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from data_prep.config import BuildConfig
from serve_app import submissions
from serve_app.datasets import builds
from serve_app.datasets.service import BuildOptions, DatasetStore, check_options
from tests.data_prep.corpus import speak_recording
from voice_core.errors import InvalidInputError, PayloadTooLargeError
from voice_core.settings import Settings
from voice_core.storage import Storage

NAME = "espeak-en"
SENTENCES = (
    ["The weather was warm and sunny all afternoon.", "She opened the window to let in some fresh air."],
    ["We will meet at the library after lunch.", "Please put the books back on the shelf."],
)


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.url, headers=service.headers, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """Two short recordings of one espeak voice and a text file the pipeline must report."""
    folder = tmp_path_factory.mktemp("datasets-api")
    files = []
    for index, sentences in enumerate(SENTENCES):
        path, _ = speak_recording(folder / f"speaker_{index}.wav", sentences, seed=index)
        files.append((path.name, path.read_bytes()))
    return [*files, ("notes.txt", b"not a recording\n")]


def _form(recordings: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "application/octet-stream")) for name, data in recordings]


def _wait(client: httpx.Client, name: str, deadline_s: float = 300) -> dict:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        response = client.get(f"/datasets/{name}")
        assert response.status_code == 200, response.text
        if (dataset := response.json())["status"] != "building":
            return dataset
        time.sleep(1)
    raise TimeoutError(f"dataset {name} still building after {deadline_s}s: {client.get(f'/datasets/{name}').text}")


def _error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, message


@pytest.mark.slow
def test_build_from_uploads_then_append(client: httpx.Client, recordings: list[tuple[str, bytes]], service) -> None:
    response = client.post("/datasets", data={"name": NAME, "language": "en"}, files=_form(recordings))
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "building" and accepted["job_id"] and not accepted["appended"]
    assert accepted["runner"] in ("ray_job", "ray_task")
    assert accepted["options"] == {"language": "en", "whisper_model": "tiny.en", "min_clip_s": 1.0, "max_clip_s": 11.6}
    stored = sorted(p.name for p in (service.storage / "recordings" / NAME).iterdir())
    assert stored == ["notes.txt", "speaker_0.wav", "speaker_1.wav"]

    busy = client.post("/datasets", json={"name": NAME, "language": "en", "source": NAME})
    _error(busy, 409, "is being built")

    dataset = _wait(client, NAME)
    assert dataset["status"] == "ready", json.dumps(dataset, indent=1)
    assert dataset["job_status"] == "SUCCEEDED" and dataset["exit_status"] == 0
    manifest = dataset["manifest"]
    sources = {s["source_id"]: s for s in manifest["sources"]}
    assert sources["notes"]["status"] == "unsupported" and "not an audio file" in sources["notes"]["reason"]
    assert sources["speaker_0"]["status"] == sources["speaker_1"]["status"] == "processed"
    assert manifest["kept"] >= 2 and manifest["kept"] == dataset["clips"]
    assert manifest["kept_duration_s"] > 2 and manifest["train"] + manifest["eval"] == manifest["kept"]
    assert sum(manifest["rejected_by_reason"].values()) == manifest["clips"] - manifest["kept"]
    progress = dataset["progress"]
    assert progress["stage"] == "done" and progress["sources_done"] == progress["sources_total"] == 2
    assert progress["clips_kept"] == manifest["kept"]
    assert "clips kept" in (dataset["logs_tail"] or "")

    listed = {d["name"]: d for d in client.get("/datasets").json()["data"]}
    assert listed[NAME]["status"] == "ready" and listed[NAME]["clips"] == manifest["kept"]
    assert listed[NAME]["kept_duration_s"] == manifest["kept_duration_s"]

    clips = client.get(f"/datasets/{NAME}/clips", params={"limit": 1}).json()
    assert clips["total"] == manifest["kept"] and len(clips["data"]) == 1
    clip = clips["data"][0]
    assert clip["id"].startswith("speaker_") and clip["text"].strip() and clip["normalized_text"].strip()
    audio = client.get(clip["audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.content)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (22050, 1, 2)
        assert abs(wav.getnframes() / 22050 - clip["duration_s"]) < 0.05

    other = client.post("/datasets", json={"name": NAME, "language": "en", "source": NAME, "max_clip_s": 8})
    _error(other, 409, "max_clip_s", "other options")

    # Same options: a new build over the same folder; finished recordings are not analysed again.
    again = client.post("/datasets", json={"name": NAME, "language": "en", "source": NAME})
    assert again.status_code == 202, again.text
    assert again.json()["appended"] and again.json()["job_id"] != accepted["job_id"]
    extended = _wait(client, NAME)
    assert extended["status"] == "ready", json.dumps(extended, indent=1)
    statuses = {s["source_id"]: s["status"] for s in extended["manifest"]["sources"]}
    assert statuses["speaker_0"] == statuses["speaker_1"] == "skipped"
    assert extended["clips"] == manifest["kept"]
    assert [b["job_id"] for b in extended["previous_builds"]] == [accepted["job_id"]]


@pytest.mark.slow
def test_bad_dataset_requests(client: httpx.Client, recordings: list[tuple[str, bytes]], service) -> None:
    form = _form(recordings[:1])
    _error(client.post("/datasets", data={"name": "../evil", "language": "en"}, files=form), 400, "'name'")
    _error(client.post("/datasets", json={"name": "a/b", "language": "en", "source": "x"}), 400, "'name'")
    _error(client.post("/datasets", data={"name": "ok", "language": "fr"}, files=form), 400, "'language'")
    _error(client.post("/datasets", json={"name": "ok", "language": "en", "source": "nowhere"}), 404, "'source'")
    _error(client.post("/datasets", json={"name": "ok", "language": "en", "source": "../x"}), 400, "'source'")
    _error(client.post("/datasets", data={"name": "ok", "language": "en"}), 400, "no recordings")
    _error(client.post("/datasets", json={"name": "ok", "language": "en"}), 400, "no recordings")
    pt_on_english_model = {"name": "ok", "language": "pt", "whisper_model": "tiny.en", "source": "x"}
    _error(client.post("/datasets", json=pt_on_english_model), 400, "'language'", "English-only")
    _error(client.post("/datasets", json={"name": "ok", "language": "en", "source": "x", "extra": 1}), 400, "extra")
    wrong_field = [("audio", ("a.wav", b"RIFF", "audio/wav"))]
    _error(client.post("/datasets", data={"name": "ok", "language": "en"}, files=wrong_field), 400, "'files'")
    _error(client.get("/datasets/never-built"), 404, "never-built")
    _error(client.get("/datasets/never-built/clips"), 404)
    _error(client.get("/datasets/..hidden"), 400, "'name'")
    _error(client.get("/datasets/never-built/clips/..secret/audio"), 400, "'clip_id'")
    _error(client.get("/datasets/never-built/clips/missing-00001/audio"), 404)
    assert "ok" not in {d["name"] for d in client.get("/datasets").json()["data"]}  # nothing was created
    assert not (service.storage / "recordings" / "ok").exists()


class FakeJobs:
    """Stands in for ``JobSubmissionClient``: records the submission, answers with a set status."""

    def __init__(self) -> None:
        self.submitted: dict = {}
        self.status = "RUNNING"

    def submit_job(self, **kwargs) -> str:
        self.submitted = kwargs
        return kwargs["submission_id"]

    def get_job_info(self, job_id: str) -> SimpleNamespace:
        from ray.job_submission import JobStatus

        assert job_id == self.submitted["submission_id"]
        failed = self.status == "FAILED"
        return SimpleNamespace(
            status=JobStatus(self.status),
            message="Job entrypoint command failed with exit code 1" if failed else "",
            driver_exit_code=1 if failed else None,
            end_time=int(time.time() * 1000) if failed else None,
        )

    def get_job_logs(self, job_id: str) -> str:
        return "x" * 10_000 + "end of log"


def test_ray_job_submission_passes_command_env_and_cpus(
    settings: Settings, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = FakeJobs()
    monkeypatch.setattr(submissions, "jobs_api_client", lambda _settings: (jobs, None))
    store = DatasetStore(storage)
    (store.recordings / "src").mkdir(parents=True)
    options = BuildOptions(language="en", whisper_model="tiny.en")
    record = builds.submit(store, "ds", options, "src", None, settings)
    assert record["runner"] == "ray_job" and record["job_id"] == jobs.submitted["submission_id"]
    assert jobs.submitted["entrypoint_num_cpus"] == submissions.DRIVER_NUM_CPUS
    assert jobs.submitted["runtime_env"]["env_vars"]["AVS_STORAGE_ROOT"] == str(settings.storage_root)
    cd, python, *argv = shlex.split(jobs.submitted["entrypoint"].replace(" && ", " "))[1:]
    assert cd == str(settings.storage_root) and python == sys.executable
    assert argv[:3] == ["-m", "data_prep", "build"]
    assert argv[argv.index("--input") + 1] == str(store.recordings / "src")
    assert argv[argv.index("--output") + 1] == str(storage.datasets / "ds")
    assert argv[argv.index("--no-progress")] and "--language" not in argv  # the options travel as JSON
    config = json.loads(Path(argv[argv.index("--config") + 1]).read_text())
    assert BuildConfig.from_options(config) == check_options(options, settings.dataset_build_cpus)
    assert config["resources"]["transcribe_num_cpus"] == 0.5  # half of AVS_DATASET_BUILD_CPUS=1

    assert builds.describe(store, "ds", settings)["status"] == "building"
    jobs.status = "FAILED"
    progress = {"started_at": time.time() + 1, "stage": "failed", "error": "no usable clips were produced"}
    (storage.datasets / "ds" / "progress.json").write_text(json.dumps(progress))
    view = builds.describe(store, "ds", settings, detail=True)
    assert view["status"] == "failed" and view["error"] == "no usable clips were produced"
    assert view["exit_status"] == 1 and view["logs_tail"].endswith("end of log")
    assert len(view["logs_tail"]) == submissions.LOG_TAIL_BYTES
    assert store.load_record("ds")["status"] == "failed"  # terminal outcomes are saved


def test_cli_built_dataset_is_listed_from_its_files(settings: Settings, storage: Storage) -> None:
    directory = storage.datasets / "by-hand"
    directory.mkdir()
    (directory / "manifest.json").write_text(json.dumps({"kept": 3, "clips": 4, "kept_duration_s": 7.5}))
    view = builds.describe(DatasetStore(storage), "by-hand", settings)
    assert (view["status"], view["clips"], view["kept_duration_s"], view["runner"]) == ("ready", 3, 7.5, None)


def test_options_are_checked_as_the_cli_checks_them() -> None:
    config = check_options(BuildOptions(language="pt", whisper_model="base"), 1.0)
    assert (config.transcribe.language, config.transcribe.model, config.resources.analyze_num_cpus) == (
        "pt",
        "base",
        0.25,
    )
    with pytest.raises(InvalidInputError, match="field 'max_clip_s'"):
        check_options(BuildOptions(language="en", whisper_model="tiny.en", min_clip_s=5, max_clip_s=5), 1.0)
    with pytest.raises(InvalidInputError, match=r"field 'language'.*English-only"):
        check_options(BuildOptions(language="pt", whisper_model="tiny.en"), 1.0)
    with pytest.raises(InvalidInputError, match="field 'whisper_model'"):
        check_options(BuildOptions(language="en", whisper_model=""), 1.0)


def test_uploads_are_stored_safely(storage: Storage) -> None:
    store = DatasetStore(storage)
    stored = store.save_uploads(
        "ds",
        [("../../etc/My Take.WAV", io.BytesIO(b"one")), ("My_Take.wav", io.BytesIO(b"two")), ("", io.BytesIO(b"3"))],
        max_bytes=10,
    )
    assert stored == ["My_Take.wav", f"My_Take-{hashlib.sha256(b'two').hexdigest()[:8]}.wav", "upload-2"]
    assert store.save_uploads("ds", [("My_Take.wav", io.BytesIO(b"one"))], max_bytes=10) == ["My_Take.wav"]
    with pytest.raises(PayloadTooLargeError, match="AVS_MAX_DATASET_FILE_BYTES"):
        store.save_uploads("ds", [("big.wav", io.BytesIO(b"x" * 11))], max_bytes=10)
    assert sorted(p.name for p in (store.recordings / "ds").iterdir()) == sorted(stored)
    assert not (storage.root / "etc").exists()
