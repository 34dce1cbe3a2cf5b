"""The job runner's class on a fake TTS handle (no Ray, no model): attempts, cancels and ownership."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

import serve_app.jobs.runner as job_runner
from serve_app.jobs.runner import JobRunner
from serve_app.jobs.service import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobStore
from serve_app.speech.protocol import SynthesisRequest, SynthesisResult
from tests.serve_app.job_helpers import hold_in_another_process, make_job
from voice_core.settings import Settings
from voice_core.storage import Storage

RATE = 8000
FINAL = (SUCCEEDED, FAILED, CANCELLED)
Runner = JobRunner.func_or_class  # the plain class under the Serve deployment


class FakeTTS:
    """Answers each unit with 0.1 s of samples; ``before`` runs first (to cancel, say)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.before = lambda request: None
        self.synthesize = SimpleNamespace(remote=self._synthesize)

    async def _synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        self.texts.append(request.text)
        self.before(request)
        await asyncio.sleep(0)
        return SynthesisResult(
            audio=b"",
            media_type="audio/wav",
            sample_rate=RATE,
            model_requested="tiny-xtts",
            model_used="tiny-xtts",
            fallback_reason=None,
            seed=request.seed or 0,
            language="en",
            voice="v",
            synth_seconds=0.01,
            samples=np.full(RATE // 10, 0.1, dtype=np.float32),
        )


async def _until(check, what: str, polls: int = 2000) -> None:
    for _ in range(polls):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never got there: {what}")


def run_jobs(settings: Settings, tts: FakeTTS, job_ids: list[str], then=None) -> dict[str, dict]:
    """Start a runner, wait until ``job_ids`` are final and the runner idle, and return their records."""
    store = JobStore(Storage.from_settings(settings))

    async def main() -> dict[str, dict]:
        runner = Runner(tts, settings, max_concurrent_jobs=2)
        try:
            await runner.wake()
            if then is not None:
                await then(runner, store)
            await _until(lambda: all(store.load(j)["status"] in FINAL for j in job_ids), f"{job_ids} final")
            await _until(lambda: not runner._active, "the runner idle")
            return {job_id: store.load(job_id) for job_id in job_ids}
        finally:
            runner.__del__()

    return asyncio.run(main())


def test_a_job_whose_runner_crashed_on_every_attempt_is_failed_and_the_others_run(
    settings: Settings, storage: Storage
) -> None:
    store = JobStore(storage)
    # As a runner that crashed mid-job leaves it: status running, attempts counted at each start.
    doomed = make_job(store, status=RUNNING, attempts=settings.max_job_attempts)
    last_try = make_job(store, status=RUNNING, attempts=settings.max_job_attempts - 1)
    fresh = make_job(store)
    tts = FakeTTS()
    records = run_jobs(settings, tts, [doomed, last_try, fresh])
    failed = records[doomed]
    assert failed["status"] == FAILED, failed
    assert f"attempted {settings.max_job_attempts} times" in failed["error"]["message"]
    assert "AVS_MAX_JOB_ATTEMPTS" in failed["error"]["message"]
    assert failed["attempts"] == settings.max_job_attempts  # not started again
    assert records[last_try]["status"] == SUCCEEDED and records[last_try]["attempts"] == settings.max_job_attempts
    assert records[fresh]["status"] == SUCCEEDED and records[fresh]["attempts"] == 1
    assert len(tts.texts) == 4  # two units each for the jobs that ran, none for the doomed one


def test_a_cancel_during_the_final_write_ends_cancelled(
    settings: Settings, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JobStore(storage)
    job_id = make_job(store)
    write = job_runner.atomic_write_bytes

    def cancel_then_write(path, data: bytes) -> None:
        JobStore(storage).cancel(job_id)  # another ingress replica's DELETE /jobs/{id} lands now
        write(path, data)

    monkeypatch.setattr(job_runner, "atomic_write_bytes", cancel_then_write)
    record = run_jobs(settings, FakeTTS(), [job_id])[job_id]
    assert record["status"] == CANCELLED, record
    assert record["audio_url"] is None
    assert store.load(job_id)["status"] == CANCELLED


def test_a_cancel_written_to_disk_stops_the_job_before_its_next_unit(settings: Settings, storage: Storage) -> None:
    store = JobStore(storage)
    job_id = make_job(store, units=4)
    tts = FakeTTS()
    # Written by some other process (an ingress replica), not through this runner.
    tts.before = lambda request: JobStore(storage).cancel(job_id) if len(tts.texts) == 2 else None
    record = run_jobs(settings, tts, [job_id])[job_id]
    assert record["status"] == CANCELLED, record
    assert len(tts.texts) == 2 and record["done"] <= 1


def test_a_job_another_runner_holds_is_skipped_until_it_lets_go(settings: Settings, storage: Storage) -> None:
    store = JobStore(storage)
    held = make_job(store)
    free = make_job(store)
    holder = hold_in_another_process(storage, held)

    async def release_after_the_free_job(runner, store: JobStore) -> None:
        await _until(lambda: store.load(free)["status"] in FINAL, "the free job final")
        assert store.load(held)["status"] == QUEUED and store.load(held)["attempts"] == 0
        holder.kill()  # the other replica goes away; its lock with it
        holder.wait(30)
        await runner.wake()

    try:
        records = run_jobs(settings, FakeTTS(), [held, free], then=release_after_the_free_job)
    finally:
        holder.kill()
        holder.wait(30)
    assert records[free]["status"] == SUCCEEDED
    assert records[held]["status"] == SUCCEEDED and records[held]["attempts"] == 1
