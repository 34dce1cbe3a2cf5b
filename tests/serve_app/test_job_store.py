"""Job records on disk without Ray: locked compare-and-swap updates, cancel, and runner ownership."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from serve_app.jobs import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobStore, new_job_id, new_record
from voice_core.errors import ConflictError, NotFoundError
from voice_core.storage import Storage

ROOT = Path(__file__).resolve().parents[2]


def make_job(store: JobStore, units: int = 2, **fields) -> str:
    """A text job of ``units`` one-word units, with ``fields`` overriding its record."""
    record = new_record(
        new_job_id(),
        "text",
        units,
        voice=None,
        language="en",
        quality_profile="balanced",
        model=None,
        model_requested="tiny-xtts",
        allow_fallback=False,
        format="wav",
        seed=1,
        chars=units * 4,
    )
    record.update(fields)
    store.create(record, [{"text": f"Word {index}."} for index in range(units)])
    return record["id"]


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


HOLD = """
import sys
from pathlib import Path
from serve_app.jobs import JobStore
from voice_core.storage import Storage

owner = JobStore(Storage(Path(sys.argv[1]))).claim(sys.argv[2])
print("held" if owner is not None else "refused", flush=True)
sys.stdin.read()  # hold until the test closes our stdin
"""


def hold_in_another_process(storage: Storage, job_id: str) -> subprocess.Popen:
    """A process that claims ``job_id`` like a second runner replica, and holds it until its stdin closes."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(storage.root), job_id],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "held"
    return process


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
