"""``progress.json`` of a run: status, position, loss history, checkpoints and samples.

Rank 0 writes it (atomically) as training goes; the driver marks the end. The API, the UI and the
CLI's progress bar read it. Loss history is thinned to at most ``MAX_POINTS`` points by keeping
every other point whenever it fills up, so the file stays small for long runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from voice_core.status import Status
from voice_core.storage import atomic_write_json, read_json

PROGRESS = "progress.json"
MAX_POINTS = 1000
RUNNING, FAILED, STOPPED = Status.RUNNING, Status.FAILED, Status.STOPPED
FINISHED = "finished"  # a training run's word for Status.SUCCEEDED (in progress.json and the API)


def read_progress(run_dir: Path) -> dict[str, Any] | None:
    """The run's progress record, or None when it has none (yet) or it is unreadable."""
    return read_json(run_dir / PROGRESS)


def update_progress(run_dir: Path, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into ``progress.json`` (creating it) and return the new record."""
    record = read_progress(run_dir) or {}
    record.update(changes, updated_at=round(time.time(), 3))
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / PROGRESS, record)
    return record


def record_worker(run_dir: Path, rank: int, pid: int, node_ip: str) -> None:
    """Note which process is worker ``rank`` (``workers/rank_<N>.json``), for operators and fault tests."""
    directory = run_dir / "workers"
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        directory / f"rank_{rank}.json",
        {"rank": rank, "pid": pid, "node_ip": node_ip, "started_at": round(time.time(), 3)},
    )


def _thin(points: list[list[float]]) -> list[list[float]]:
    return points[::2] + ([points[-1]] if len(points) % 2 == 0 else []) if len(points) > MAX_POINTS else points


class TrainingMetrics:
    """Gauges through ``ray.util.metrics`` (Ray's Prometheus endpoint): loss, step, learning rate per run."""

    def __init__(self, run_name: str) -> None:
        from ray.util.metrics import Gauge

        self.tags = {"run": run_name}
        self.loss = Gauge("avs_training_loss", "Latest training or eval loss of a run.", tag_keys=("run", "split"))
        self.step = Gauge("avs_training_step", "Optimizer steps done by a run.", tag_keys=("run",))
        self.lr = Gauge("avs_training_learning_rate", "Current learning rate of a run.", tag_keys=("run",))

    def train(self, step: int, loss: float, lr: float) -> None:
        """One optimizer step."""
        self.loss.set(loss, tags={**self.tags, "split": "train"})
        self.step.set(step, tags=self.tags)
        self.lr.set(lr, tags=self.tags)

    def eval(self, loss: float) -> None:
        """One evaluation."""
        self.loss.set(loss, tags={**self.tags, "split": "eval"})


class RunProgress:
    """Writer of ``progress.json`` used by rank 0 (each call persists), also exporting the metrics."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.metrics = TrainingMetrics(run_dir.name)
        self.record = read_progress(run_dir) or {}
        self.record.setdefault("train_loss_history", [])
        self.record.setdefault("eval_loss_history", [])
        self.record.setdefault("samples", [])
        self.record.setdefault("checkpoints", [])
        self._last_write = 0.0

    def _save(self, force: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < 1.0:
            return
        self._last_write = now
        self.record["updated_at"] = round(time.time(), 3)
        atomic_write_json(self.run_dir / PROGRESS, self.record)

    def started(self, total_steps: int, epochs: int, steps_per_epoch: int, pid: int) -> None:
        """Training (re)starts with these totals."""
        self.record.update(
            status=RUNNING,
            total_steps=total_steps,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            worker_pid=pid,
            error=None,
        )
        self.record.setdefault("step", 0)
        self.record.setdefault("epoch", 0)
        self.record.setdefault("started_at", round(time.time(), 3))
        self._save()

    def resumed(self, step: int, epoch: int) -> None:
        """The worker restored a checkpoint at ``step``; history after it is dropped (it will be redone)."""
        self.record["train_loss_history"] = [p for p in self.record["train_loss_history"] if p[0] <= step]
        self.record["eval_loss_history"] = [p for p in self.record["eval_loss_history"] if p[0] <= step]
        resumes = self.record.setdefault("resumes", [])
        resumes.append({"step": step, "epoch": epoch, "at": round(time.time(), 3)})
        self.record.update(step=step, epoch=epoch)
        self._save()

    def step(self, step: int, epoch: int, loss: float, lr: float) -> None:
        """One optimizer step finished."""
        self.metrics.train(step, loss, lr)
        history = self.record["train_loss_history"]
        history.append([step, round(loss, 6)])
        self.record["train_loss_history"] = _thin(history)
        self.record.update(step=step, epoch=epoch, train_loss=round(loss, 6), lr=lr)
        self._save(force=False)

    def checkpoint(self, step: int, epoch: int, eval_loss: float, name: str) -> None:
        """A checkpoint was reported with its eval loss."""
        self.metrics.eval(eval_loss)
        self.record["eval_loss_history"].append([step, epoch, round(eval_loss, 6)])
        self.record["checkpoints"].append(name)
        self.record.update(step=step, epoch=epoch, eval_loss=round(eval_loss, 6))
        self._save()

    def finished(self) -> None:
        """The last epoch is done."""
        self.record.update(status=FINISHED, finished_at=round(time.time(), 3))
        self._save()

    def sample(self, epoch: int, path: Path) -> None:
        """Samples of ``epoch`` were written."""
        entry = {"epoch": epoch, "file": path.relative_to(self.run_dir).as_posix()}
        self.record["samples"] = [s for s in self.record["samples"] if s.get("epoch") != epoch] + [entry]
        self._save()
