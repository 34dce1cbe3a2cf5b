"""Submissions: one command run on the cluster as a Ray Job, else in a detached actor.

Both runners execute the same argv with the interpreter of the ingress, the storage root as working
directory and the environment passed explicitly (``AVS_STORAGE_ROOT`` and friends), so nothing
depends on where the ingress was started.

- ``ray_job``: submitted with :class:`ray.job_submission.JobSubmissionClient` to the dashboard named
  by ``AVS_DASHBOARD_ADDRESS`` or, by default, to the dashboard of the cluster the service runs on
  (its address is in the GCS key-value store). With Ray's token auth on (the default since 2.59),
  the client sends the cluster's token (``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN*`` or ``~/.ray/auth_token``),
  which every process of the cluster already has.
- ``ray_task``: where there is no dashboard (the embedded default starts Ray without one) or it
  refused the submission, a detached actor (so it outlives the ingress replica) runs the command as a
  subprocess in its own process group, writes its output to a log file, calls a finishing function
  with the exit status, then exits. It can be asked to stop the command.

The lifecycle of a run built on these (its record, status, refresh) is :mod:`serve_app.runs`.
Everything here blocks (HTTP to the dashboard, GCS calls, files): call it from a thread.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voice_core.settings import Settings

RAY_JOB, RAY_TASK = "ray_job", "ray_task"
# CPUs of the process that drives the command (Ray Data stages / Train workers reserve their own).
DRIVER_NUM_CPUS = 0.1
# After the Jobs API failed, commands go straight to the actor for this long (a failed submit can take 10 s).
RETRY_JOBS_API_S = 60.0
LOG_TAIL_BYTES = 4000

_lock = threading.Lock()
_clients: dict[str, Any] = {}
_unavailable: dict[str, tuple[float, str]] = {}


def build_env(settings: Settings) -> dict[str, str]:
    """Environment of a command: the settings it needs, from the ingress's settings (not its environment)."""
    env = {"AVS_STORAGE_ROOT": str(settings.storage_root), "AVS_LOG_LEVEL": settings.log_level, "PYTHONUNBUFFERED": "1"}
    if settings.allowed_mounts:
        env["AVS_ALLOWED_MOUNTS"] = ",".join(str(path) for path in settings.allowed_mounts)
    return env


def dashboard_address(settings: Settings) -> str | None:
    """The Jobs API address: ``AVS_DASHBOARD_ADDRESS``, else the current cluster's dashboard, else None."""
    if settings.dashboard_address:
        return settings.dashboard_address
    try:
        from ray._private.services import get_webui_url_from_internal_kv

        url = get_webui_url_from_internal_kv()
    except Exception:  # not connected to Ray, or the internal API moved: no Jobs API then
        return None
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


def forget_jobs_api(address: str, reason: str) -> None:
    """Stop using the Jobs API at ``address`` for a while (it just failed)."""
    with _lock:
        _clients.pop(address, None)
        _unavailable[address] = (time.monotonic() + RETRY_JOBS_API_S, reason)


def jobs_api_client(settings: Settings) -> tuple[Any | None, str | None]:
    """A (cached) Jobs API client, or ``(None, why not)``."""
    address = dashboard_address(settings)
    if address is None:
        return None, "the cluster has no dashboard (Jobs API); set AVS_DASHBOARD_ADDRESS or start Ray with it"
    with _lock:
        if address in _clients:
            return _clients[address], None
        failed = _unavailable.get(address)
        if failed is not None and time.monotonic() < failed[0]:
            return None, failed[1]
    try:
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(address)
    except Exception as exc:
        reason = f"the Jobs API at {address} did not answer ({short(exc)})"
        forget_jobs_api(address, reason)
        return None, reason
    with _lock:
        _clients[address] = client
    return client, None


def short(exc: BaseException, limit: int = 200) -> str:
    """One line of an exception's message, at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def submit_to_jobs_api(submission_id: str, argv: list[str], settings: Settings, metadata: dict[str, str]) -> str | None:
    """Submit ``argv`` through the Jobs API; returns None on success, else why it could not."""
    client, reason = jobs_api_client(settings)
    if client is None:
        return reason
    cwd = str(settings.storage_root)
    try:
        client.submit_job(
            entrypoint=f"cd {shlex.quote(cwd)} && {shlex.join(argv)}",
            submission_id=submission_id,
            runtime_env={"env_vars": build_env(settings)},
            entrypoint_num_cpus=DRIVER_NUM_CPUS,
            metadata=metadata,
        )
    except Exception as exc:
        reason = f"the Jobs API did not take the command ({short(exc)})"
        forget_jobs_api(dashboard_address(settings) or "", reason)
        return reason
    return None


def start_actor(submission_id: str, namespace: str, settings: Settings) -> Any:
    """Create the detached :class:`TaskActor` named ``submission_id`` (start it with ``actor.run.remote``)."""
    import ray

    return (
        ray.remote(TaskActor)
        .options(
            name=submission_id,
            namespace=namespace,
            lifetime="detached",
            num_cpus=DRIVER_NUM_CPUS,
            max_restarts=0,
            max_concurrency=2,  # run() blocks; stop() must still get through
            runtime_env={"env_vars": build_env(settings)},
        )
        .remote()
    )


class TaskActor:
    """Runs one command as a subprocess, hands its exit status to a finishing function, then exits."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = False

    def run(
        self, argv: list[str], cwd: str, log_path: str, submission_id: str, finish: Callable[[int], None] | None = None
    ) -> int:
        """Run the command to the end (its output goes to ``log_path``)."""
        import ray

        env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address, PYTHONUNBUFFERED="1")
        with Path(log_path).open("ab") as log:
            log.write(f"=== {submission_id} ({time.strftime('%Y-%m-%d %H:%M:%S')}): {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                self.process = subprocess.Popen(
                    argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
                code = self.process.wait()
            except OSError as exc:
                log.write(f"could not start the command: {exc}\n".encode())
                code = 127
        if finish is not None:
            finish(code)
        ray.actor.exit_actor()
        return code

    def stop(self) -> bool:
        """Stop the command's whole process group (SIGTERM, then SIGKILL after 10 s)."""
        process = self.process
        if process is None or process.poll() is not None:
            return False
        self.stopped = True
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        return True


def actor_alive(submission_id: str, namespace: str) -> bool:
    """Whether the actor running ``submission_id`` still exists."""
    import ray

    try:
        ray.get_actor(submission_id, namespace=namespace)
    except ValueError:
        return False
    return True


def stop_submission(submission_id: str, runner: str | None, namespace: str, settings: Settings) -> str | None:
    """Ask the runner of ``submission_id`` to stop it; returns None when asked, else why not."""
    if runner == RAY_JOB:
        client, reason = jobs_api_client(settings)
        if client is None:
            return reason
        try:
            client.stop_job(submission_id)
        except Exception as exc:
            return f"the Jobs API did not stop {submission_id} ({short(exc)})"
        return None
    if runner == RAY_TASK:
        import ray

        try:
            actor = ray.get_actor(submission_id, namespace=namespace)
        except ValueError:
            return f"{submission_id} is not running"
        ray.get(actor.stop.remote(), timeout=30)
        return None
    return f"{submission_id} has no runner yet"


def jobs_api_info(submission_id: str, settings: Settings) -> tuple[Any | None, str | None]:
    """A Ray Job's ``JobDetails``, or ``(None, "cannot ask the Jobs API: <why>")``."""
    client, reason = jobs_api_client(settings)
    if client is None:
        return None, f"cannot ask the Jobs API: {reason}"
    try:
        return client.get_job_info(submission_id), None
    except Exception as exc:
        return None, f"cannot ask the Jobs API: {short(exc)}"


def jobs_api_logs(submission_id: str, settings: Settings, limit: int) -> str | None:
    """The last ``limit`` characters of a Ray Job's logs, or None."""
    client, _ = jobs_api_client(settings)
    if client is None:
        return None
    try:
        return client.get_job_logs(submission_id)[-limit:]
    except Exception:
        return None


def python_argv(*args: str) -> list[str]:
    """``[python, *args]`` with the ingress's interpreter."""
    return [sys.executable, *args]


def tail(path: Path, max_bytes: int = LOG_TAIL_BYTES) -> str | None:
    """The last ``max_bytes`` of a text file (None when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
