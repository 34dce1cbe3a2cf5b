"""Job records on disk without Ray: locked compare-and-swap updates, cancel, and runner ownership."""

from __future__ import annotations

import threading

import pytest

from serve_app.jobs.service import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobStore
from tests.serve_app.job_helpers import hold_in_another_process, make_job
from voice_core.errors import ConflictError, NotFoundError
from voice_core.storage import Storage


def test_update_applies_a_change_under_the_lock_and_refuses_leaving_a_final_status(storage: Storage) -> None:
    store = JobStore(storage)
    job_id = make_job(store)
    assert store.update(job_id, lambda r: r.update(status=RUNNING))["status"] == RUNNING
    assert store.load(job_id)["status"] == RUNNING
    assert store.update(job_id, lambda r: r.update(status=CANCELLED))["status"] == CANCELLED
    # A runner that finished the job meanwhile tries to record success: the cancel stays.
    stored = store.update(job_id, lambda r: r.update(status=SUCCEEDED, progress=1.0))
    assert (stored["status"], stored["progress"]) == (CANCELLED, 0.0)
    assert store.load(job_id)["status"] == CANCELLED


def test_concurrent_updates_lose_nothing(storage: Storage) -> None:
    store = JobStore(storage)
    job_id = make_job(store)

    def bump() -> None:
        for _ in range(100):
            JobStore(storage).update(job_id, lambda r: r.update(retries=r["retries"] + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert store.load(job_id)["retries"] == 400


def test_cancel_is_a_write_to_disk_and_refuses_finished_jobs(storage: Storage) -> None:
    store = JobStore(storage)
    queued = make_job(store)
    record = store.cancel(queued)
    assert record["status"] == CANCELLED and record["timings"]["finished_at"] is not None
    assert store.load(queued)["status"] == CANCELLED
    assert store.cancel(queued)["status"] == CANCELLED  # cancelling twice is fine
    for status in (SUCCEEDED, FAILED):
        finished = make_job(store, status=status)
        with pytest.raises(ConflictError, match=f"already {status}"):
            store.cancel(finished)
    with pytest.raises(NotFoundError):
        store.cancel("job-000000000000")
    with pytest.raises(NotFoundError):
        store.update("job-000000000000", lambda r: None)


def test_only_one_runner_owns_a_job(storage: Storage) -> None:
    store = JobStore(storage)
    job_id = make_job(store)
    first = store.claim(job_id)
    assert first is not None
    assert JobStore(storage).claim(job_id) is None  # a second runner (another open file) skips it
    first.close()
    again = JobStore(storage).claim(job_id)
    assert again is not None
    again.close()
    assert store.claim("job-000000000000") is None


def test_a_job_held_by_another_process_is_not_claimed_until_that_process_ends(storage: Storage) -> None:
    store = JobStore(storage)
    job_id = make_job(store)
    holder = hold_in_another_process(storage, job_id)
    try:
        assert store.claim(job_id) is None
    finally:
        holder.kill()  # as a crashed runner: the lock goes with the process
        holder.wait(30)
    owner = store.claim(job_id)
    assert owner is not None
    owner.close()
