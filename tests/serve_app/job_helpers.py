"""Jobs on disk for the job store and runner tests: a small job, and a second "runner" process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serve_app.jobs.service import JobStore, new_job_id, new_record
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


HOLD = """
import sys
from pathlib import Path
from serve_app.jobs.service import JobStore
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
