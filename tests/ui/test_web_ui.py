"""The web UI in headless Chromium against the real service (tiny model, API key on)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import espeak
from tests.data_prep.corpus import speak_recording
from tests.serve_app.conftest import ServiceInfo
from tests.train_jobs.conftest import write_dataset
from tests.ui.conftest import enter_key, screenshot

pytestmark = pytest.mark.slow
AUDIO_READY = "(audio) => audio.src && audio.readyState >= 1 && Number.isFinite(audio.duration) && audio.duration > 0"


def wait_audio(locator, timeout_ms: int = 120_000) -> float:
    """Wait until the <audio> ``locator`` points at has loaded audio; return its duration in seconds."""
    audio = locator.element_handle(timeout=timeout_ms)
    locator.page.wait_for_function(AUDIO_READY, arg=audio, timeout=timeout_ms)
    return audio.evaluate("(audio) => audio.duration")


def test_api_key_prompt_keeps_the_key_for_the_session_only(page, service: ServiceInfo) -> None:
    page.goto("/")
    enter_key(page, "wrong-key")
    page.locator("#key-message", has_text="refused").wait_for()
    enter_key(page)
    page.locator("#speak-language option").first.wait_for(state="attached")
    assert page.evaluate("sessionStorage.getItem('avs-api-key')") == service.api_key
    assert page.evaluate("localStorage.length") == 0
    assert page.locator("#key-dialog").is_hidden()


def test_speak_whole_and_streamed(ready_page, service: ServiceInfo) -> None:
    page = ready_page
    page.locator("#untrained-banner", has_text="noise").wait_for()
    page.fill("#speak-text", "Hello from the browser.")
    page.click("#view-speak summary")  # Advanced sampling
    page.fill("#speak-seed", "7")
    page.click("#speak-submit")
    assert wait_audio(page.locator("#speak-audio")) > 0.1
    stats = page.locator("#speak-stats")
    stats.locator("dd", has_text="tiny-xtts").first.wait_for()
    page.locator("#speak-stats dt", has_text="Real-time factor (total").wait_for()
    page.wait_for_function("() => !document.querySelector('#speak-stats').textContent.includes('…')")
    assert page.get_attribute("#speak-download", "href").startswith("blob:")
    assert "Untrained model" in page.inner_text("#speak-notices")
    screenshot(page, "speak")

    page.check("#speak-stream")
    page.select_option("#speak-format", "wav")
    page.evaluate("document.querySelector('#speak-audio').removeAttribute('src')")
    page.click("#speak-submit")
    page.locator("#speak-stats dt", has_text="Time to first audio chunk").wait_for()
    assert wait_audio(page.locator("#speak-audio")) > 0.1

    page.set_viewport_size({"width": 375, "height": 812})
    screenshot(page, "speak-narrow-375")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_streamed_mp3_plays_before_the_response_has_finished(ready_page) -> None:
    page = ready_page
    assert page.evaluate("MediaSource.isTypeSupported('audio/mpeg')")
    page.fill("#speak-text", " ".join(["This sentence is streamed to the browser as it is spoken."] * 4))
    page.check("#speak-stream")
    page.select_option("#speak-format", "mp3")
    assert "as the chunks arrive" in page.inner_text("#speak-stream-info")
    page.click("#speak-submit")
    first = page.locator("#speak-first-playback[data-ms]")
    first.wait_for(timeout=120_000)
    page.wait_for_function("() => !document.querySelector('#speak-submit').disabled", timeout=120_000)
    assert "progressive" in page.inner_text("#speak-stats")
    total_dt = page.locator("#speak-stats").get_by_text("Total time", exact=True)
    total_s = float(total_dt.locator("xpath=following-sibling::dd[1]").inner_text().split()[0])
    first_s = float(first.get_attribute("data-ms")) / 1000
    assert 0 < first_s < total_s, (first_s, total_s)
    assert page.evaluate("document.querySelector('#speak-audio').src").startswith("blob:")
    assert wait_audio(page.locator("#speak-audio")) > 0.1
    assert page.get_attribute("#speak-download", "download") == "speech.mp3"
    size = page.evaluate(
        "async () => (await (await fetch(document.querySelector('#speak-download').href)).blob()).size"
    )
    assert size > 1000

    page.select_option("#speak-format", "wav")
    assert "collected" in page.inner_text("#speak-stream-info")


def test_reference_recorded_from_the_microphone(ready_page) -> None:
    page = ready_page
    page.context.grant_permissions(["microphone"])
    page.select_option("#speak-voice", "__upload__")
    record = page.get_by_role("button", name="Record from the microphone")
    stop = page.get_by_role("button", name="Stop recording")
    assert stop.is_disabled()
    record.focus()
    page.keyboard.press("Enter")
    page.locator("#speak-record-status", has_text="Recording… 2 s").wait_for(timeout=10_000)
    assert page.evaluate("document.activeElement.id") == "speak-record-stop"
    page.keyboard.press("Enter")
    page.locator("#speak-record-status", has_text="Recorded").wait_for()
    assert page.evaluate("document.querySelector('#speak-reference').files[0].name") == "recording.webm"
    page.locator("#speak-reference-info", has_text="recording.webm: ").wait_for()
    page.fill("#speak-text", "Speaking with my recorded voice.")
    page.click("#speak-submit")
    assert wait_audio(page.locator("#speak-audio"), 180_000) > 0.1
    assert page.inner_text("#speak-error") == ""


def test_bad_input_shows_its_error_next_to_the_control(ready_page) -> None:
    page = ready_page
    page.click("#view-speak summary")
    page.fill("#speak-temperature", "5")
    page.click("#speak-submit")
    error = page.locator("#speak-temperature-error")
    error.wait_for()
    assert "temperature" in error.inner_text() and "request" in error.inner_text()
    assert page.get_attribute("#speak-temperature", "aria-invalid") == "true"
    assert page.get_attribute("#speak-temperature-error", "aria-live") == "polite"
    page.fill("#speak-temperature", "")
    page.fill("#speak-text", "   ")
    page.click("#speak-submit")
    page.locator("#speak-text-error", has_text="field 'text'").wait_for()
    screenshot(page, "speak-error")

    page.goto("/#status")
    page.locator("#status-errors li", has_text="temperature").wait_for()
    page.locator("#status-engines h3", has_text="TTSDeployment").wait_for()
    assert "cpu" in page.inner_text("#status-engines")
    assert "untrained" in page.inner_text("#status-engines")
    screenshot(page, "status")


def test_voice_from_an_upload_then_used_to_speak(ready_page, speech_wav: Path, tmp_path: Path) -> None:
    page = ready_page
    page.goto("/#voices")
    page.set_input_files("#voice-files", str(speech_wav))
    page.locator("#voice-file-list li", has_text=" s").wait_for()
    assert "reference.wav: " in page.inner_text("#voice-file-list")
    page.fill("#voice-name", "Browser Voice")
    page.click("#voice-submit")
    page.locator("#voice-error.ok", has_text="Created voice").wait_for(timeout=120_000)
    row = page.locator("#voice-list tr", has_text="Browser Voice").first
    row.wait_for()
    row.get_by_role("button", name="Preview").click()
    assert wait_audio(row.locator("audio")) > 0.1

    short = espeak(tmp_path / "short.wav", "Hi.")
    page.set_input_files("#voice-files", str(short))
    page.locator("#voice-file-list li.bad").wait_for()
    page.fill("#voice-name", "Too short")
    page.click("#voice-submit")
    page.locator("#voice-files-error", has_text="short.wav").wait_for()
    screenshot(page, "voices")

    row.get_by_role("button", name="Use in Speak").click()
    page.locator("#view-speak").wait_for()
    voice_id = page.input_value("#speak-voice")
    assert voice_id and voice_id != "__upload__"
    page.fill("#speak-text", "Speaking with my stored voice.")
    page.click("#speak-submit")
    assert wait_audio(page.locator("#speak-audio")) > 0.1


def test_job_is_submitted_and_finishes(ready_page) -> None:
    page = ready_page
    page.goto("/#jobs")
    page.locator("#job-language option").first.wait_for(state="attached")
    page.fill("#job-text", "This is a long text job. It has two sentences.")
    page.click("#job-submit")
    page.locator("#job-error.ok", has_text="accepted").wait_for()
    job_id = page.inner_text("#job-error").split()[1]
    card = page.locator(f"li.job[data-job='{job_id}']")
    card.locator(".status.succeeded").wait_for(timeout=240_000)
    assert wait_audio(page.locator(f"li.job[data-job='{job_id}'] audio")) > 0.1
    assert card.get_by_role("link", name="Download").get_attribute("href").startswith("blob:")
    screenshot(page, "jobs")


def test_dataset_build_progress_manifest_and_clips(ready_page, tmp_path: Path) -> None:
    page = ready_page
    sentences = ["The weather was warm and sunny all afternoon.", "She opened the window to let in some fresh air."]
    recording, _ = speak_recording(tmp_path / "speaker_0.wav", sentences)
    page.goto("/#datasets")
    page.set_input_files("#dataset-files", str(recording))
    page.fill("#dataset-name", "ui-espeak")
    page.click("#dataset-submit")
    page.locator("#dataset-error.ok", has_text="Building ui-espeak").wait_for(timeout=60_000)
    detail = page.locator("#dataset-detail")
    detail.locator("progress").wait_for()
    detail.locator(".status.ready").wait_for(timeout=400_000)
    chart = detail.locator("svg.chart")
    chart.wait_for()
    assert "Clips kept" in chart.get_attribute("aria-label")
    clip = detail.locator("li.clip").first
    clip.wait_for()
    assert clip.locator("q").inner_text().strip()
    clip.get_by_role("button", name="Listen").click()
    assert wait_audio(page.locator("#dataset-detail li.clip audio").first) > 0.5
    screenshot(page, "datasets")


RUN = {
    "epochs": "1",
    "batch_size": "2",
    "lr": "0.001",
    "min_audio_s": "1",
    "cpus_per_worker": "0.5",
    "checkpoint_every_steps": "2",
    "max_failures": "0",
}


def test_training_run_shows_curves_samples_and_checkpoints(
    ready_page, service: ServiceInfo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = ready_page
    target = service.storage / "datasets" / "ui-speaker"
    if not target.exists():
        shutil.copytree(write_dataset(tmp_path_factory.mktemp("ui-train") / "ui-speaker"), target)
    page.goto("/#training")
    page.locator("#train-dataset option[value='ui-speaker']").wait_for(state="attached")
    page.select_option("#train-dataset", "ui-speaker")
    page.select_option("#train-base", "tiny-xtts")

    page.fill("#train-run", "ui-bad")
    page.fill("#train-lr", "-1")
    page.click("#train-submit")
    page.locator("#train-lr-error", has_text="lr").wait_for()

    run = f"ui-lora-{int(time.time())}"
    page.fill("#train-run", run)
    page.click("#train-form summary")  # More options
    for name, value in RUN.items():
        page.fill(f"#train-form [name='{name}']", value)
    page.click("#train-submit")
    page.locator("#train-error.ok", has_text=run).wait_for(timeout=120_000)
    detail = page.locator("#run-detail")
    detail.locator("h3", has_text=run).wait_for()
    detail.locator(".status.finished, .status.failed, .status.stopped").wait_for(timeout=420_000)
    assert detail.locator(".status.finished").count() == 1, detail.inner_text()
    detail.locator("svg.chart polyline.train").wait_for()
    assert detail.locator("svg.chart circle.eval").count() >= 1
    assert wait_audio(page.locator("#run-detail .sample audio").first) > 0.5
    assert detail.locator("table tbody tr").count() >= 1
    assert f"--run {run}" in detail.locator("pre code").first.inner_text()
    page.locator("#run-list button", has_text=run).wait_for()
    page.click("#ckpt-refresh")
    page.locator("#ckpt-list td code", has_text=f"runs/{run}/").first.wait_for()
    tools = page.locator("#tensorboard-info")
    tools.locator("text=Ray dashboard").wait_for()
    assert "tensorboard --logdir" in tools.inner_text()  # no TensorBoard URL set: the hint says how
    screenshot(page, "training")
