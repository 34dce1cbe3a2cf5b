"""A real, private Ray head node for tests: ``ray start --head --block`` with the dashboard and Jobs API.

Use it where a test needs what only a real cluster has (``ray job submit``, the Jobs REST API, a
second driver joining by address). Import the context manager into a ``conftest.py`` and wrap it in a
fixture of the scope you need::

    from tests.ray_head import RayHead, job_status, start_ray_head, submit_job

    @pytest.fixture(scope="module")
    def ray_head() -> Iterator[RayHead]:
        with start_ray_head(num_cpus=2) as head:
            yield head

    def test_job(ray_head: RayHead) -> None:
        address, dashboard_url, env = ray_head  # or ray_head.address, ...
        job = submit_job(ray_head, ["python", "-c", "print(1)"])
        assert job.returncode == 0, job.output
        assert job_status(ray_head, job.submission_id) == "SUCCEEDED"

``tests/data_prep/conftest.py`` has such a ``ray_head`` fixture (module scope).

Nothing is shared with other clusters on the machine: every port is a free one (GCS, dashboard, Ray
client server, dashboard agent, metrics export, runtime-env agent, a block of worker ports), the temp
dir is a short private one under ``/tmp`` (Ray's socket paths are length-limited), and the node binds
to 127.0.0.1. Token authentication (the default since Ray 2.59) is off for this cluster and its
clients (``RAY_AUTH_MODE=disabled`` in the yielded ``env``), so the Jobs API answers plain requests.
At the end only the process group of the ``ray start`` this module started is stopped, by its pid;
``ray stop`` is never run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from tests.helpers import free_port, wait_for_http

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
WORKER_PORTS = 200
TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "STOPPED")


class RayHead(NamedTuple):
    """A running private Ray head.

    Attributes:
        address: GCS address ``127.0.0.1:<port>``, for ``ray.init(address=...)`` or ``RAY_ADDRESS``
            of a driver that joins the cluster.
        dashboard_url: ``http://127.0.0.1:<port>``: the dashboard and its Jobs API, for
            ``ray job submit --address`` and ``JobSubmissionClient``.
        env: environment for client subprocesses (``ray job submit``, a joining driver): this
            process's environment without ``RAY_ADDRESS``, with auth disabled, the virtualenv's
            ``bin`` first on ``PATH`` and the repository on ``PYTHONPATH``.
    """

    address: str
    dashboard_url: str
    env: dict[str, str]


class JobResult(NamedTuple):
    """What :func:`submit_job` saw.

    Attributes:
        submission_id: the job's id.
        returncode: exit status of ``ray job submit``: it waits for the job, following its logs, and
            exits 1 when the job failed.
        output: its stdout and stderr together (the job's logs included).
    """

    submission_id: str
    returncode: int
    output: str


def _free_port_block(size: int) -> int:
    """First port of ``size`` consecutive ports that were all free a moment ago."""
    for _ in range(200):
        first = random.randrange(20_000, 60_000 - size)
        sockets = []
        try:
            for port in range(first, first + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise RuntimeError(f"no block of {size} free ports found for Ray's workers")


def client_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the head and its clients: no inherited cluster address, auth disabled."""
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    repo = str(Path(__file__).resolve().parents[1])
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        # Ray gives its dashboard 60 s to come up, then fails `ray start`; on a loaded 2-core machine (a
        # test run beside other work) importing the dashboard's modules took longer than that.
        RAY_DASHBOARD_STARTUP_TIMEOUT_S=str(int(READY_TIMEOUT_S) - 10),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p),
    )
    env.update(extra or {})
    return env


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group led by ``process`` (``ray start --block`` stops its children on SIGTERM)."""
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    # Children that outlived the leader are still in its group: make sure they are gone too.
    end = time.monotonic() + 10.0
    while time.monotonic() < end:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.2)


def _node_args(
    num_cpus: int,
    num_gpus: int,
    resources: Mapping[str, float] | None,
    object_store_bytes: int,
    temp_dir: Path,
    reserved: Sequence[int] = (),
) -> list[str]:
    """``ray start`` options every node of a test cluster gets: its resources, private ports and temp dir.

    ``reserved`` are ports the caller already chose for the node (the head's GCS and dashboard): the
    ports chosen here avoid them.
    """
    taken = set(reserved)
    while True:
        first_worker = _free_port_block(WORKER_PORTS)
        workers = range(first_worker, first_worker + WORKER_PORTS)
        if not taken.intersection(workers):
            break

    def port() -> int:
        # Free now, outside the worker block and unique among this node's ports (Ray checks both).
        while (candidate := free_port()) in workers or candidate in taken:
            continue
        taken.add(candidate)
        return candidate

    return [
        f"--num-cpus={num_cpus}",
        f"--num-gpus={num_gpus}",
        *([f"--resources={json.dumps(dict(resources))}"] if resources else []),
        f"--object-store-memory={object_store_bytes}",
        f"--node-manager-port={port()}",
        f"--object-manager-port={port()}",
        f"--dashboard-agent-listen-port={port()}",
        f"--dashboard-agent-grpc-port={port()}",
        f"--metrics-export-port={port()}",
        f"--runtime-env-agent-port={port()}",
        f"--min-worker-port={first_worker}",
        f"--max-worker-port={first_worker + WORKER_PORTS - 1}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]


@contextlib.contextmanager
def start_ray_head(
    num_cpus: int = 2,
    *,
    num_gpus: int = 0,
    resources: Mapping[str, float] | None = None,
    extra_env: Mapping[str, str] | None = None,
    object_store_bytes: int = 500 * 1024**2,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> Iterator[RayHead]:
    """Start a private Ray head with the dashboard and wait until its Jobs API answers.

    Args:
        num_cpus: logical CPUs of the node (keep it small: the machine is shared).
        num_gpus: logical GPUs the node advertises. Ray schedules on them without any CUDA device
            being present (what the GPU scheduling tests use on CPU machines).
        resources: custom resources of the node, e.g. ``{"avs_head": 1}``.
        extra_env: added to the environment of the head (so also of its jobs and workers) and of
            the yielded ``env``.
        object_store_bytes: object store size.
        ready_timeout_s: how long to wait for the Jobs API.

    Yields:
        The running head; it is stopped (its process group only) when the block ends.

    Raises:
        RuntimeError: ``ray start`` ended early (its output is in the message).
        TimeoutError: the Jobs API did not answer in time.
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="avs-rh-", dir="/tmp"))
    env = client_env(extra_env)
    gcs_port, dashboard_port, client_port = free_port(), free_port(), free_port()
    while len({gcs_port, dashboard_port, client_port}) < 3:
        dashboard_port, client_port = free_port(), free_port()
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={client_port}",
        *_node_args(
            num_cpus, num_gpus, resources, object_store_bytes, temp_dir, (gcs_port, dashboard_port, client_port)
        ),
    ]
    log_path = temp_dir / "ray-start.log"
    with log_path.open("wb") as log:
        # A new session: the head leads its own process group, which is what teardown stops.
        process = subprocess.Popen(
            command, cwd=temp_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    head = RayHead(f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dashboard_port}", env)
    try:
        try:
            wait_for_http(f"{head.dashboard_url}/api/jobs/", ready_timeout_s, alive=lambda: process.poll() is None)
        except RuntimeError:
            output = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"ray start --head ended (exit {process.poll()}):\n{output}") from None
        yield head
    finally:
        _stop_group(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def submit_job(
    head: RayHead,
    entrypoint: Sequence[str],
    *,
    working_dir: str | os.PathLike[str] | None = None,
    env_vars: Mapping[str, str] | None = None,
    timeout_s: float = 600.0,
) -> JobResult:
    """Run ``ray job submit --address <dashboard> [...] -- <entrypoint>`` and wait for the job to end.

    Args:
        head: the cluster.
        entrypoint: the job's command, e.g. ``["python", "-m", "data_prep", "build", ...]``.
        working_dir: uploaded as the job's working directory; ``None`` runs the entrypoint where the
            head started (the packages come from the virtualenv and ``PYTHONPATH``).
        env_vars: the job's ``runtime_env`` environment variables.
        timeout_s: limit for the whole submission.

    Returns:
        The submission id, the exit status of ``ray job submit`` and its output.
    """
    submission_id = f"test-{uuid.uuid4().hex[:12]}"
    command = [
        str(Path(sys.executable).parent / "ray"),
        "job",
        "submit",
        "--address",
        head.dashboard_url,
        "--submission-id",
        submission_id,
    ]
    if working_dir is not None:
        command += ["--working-dir", str(working_dir)]
    if env_vars:
        command += ["--runtime-env-json", json.dumps({"env_vars": dict(env_vars)})]
    command += ["--", *entrypoint]
    done = subprocess.run(command, env=head.env, capture_output=True, text=True, timeout=timeout_s, check=False)
    return JobResult(submission_id, done.returncode, done.stdout + done.stderr)


def job_info(head: RayHead, submission_id: str) -> dict[str, Any]:
    """The Jobs API record of a job (``status``, ``message``, ``entrypoint``, ...)."""
    with urllib.request.urlopen(f"{head.dashboard_url}/api/jobs/{submission_id}", timeout=10) as response:
        return json.loads(response.read())


def job_status(head: RayHead, submission_id: str, wait_s: float = 0.0) -> str:
    """A job's status (``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``STOPPED``).

    Args:
        head: the cluster.
        submission_id: the job.
        wait_s: keep asking this long while the job has not ended.
    """
    end = time.monotonic() + wait_s
    while True:
        try:
            status = str(job_info(head, submission_id)["status"])
        except (urllib.error.URLError, KeyError):
            status = "UNKNOWN"
        if status in TERMINAL_STATUSES or time.monotonic() >= end:
            return status
        time.sleep(1.0)


class RayWorkerNode(NamedTuple):
    """A worker node started by :func:`start_ray_worker`.

    Attributes:
        node_id: its Ray node id (hex), as the state API and Serve's replica details report it.
        process: the ``ray start --block`` process; it leads the node's process group (raylet,
            agents, every worker process of the node).
    """

    node_id: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """Lose the node at once: SIGKILL to its whole process group, as when a machine dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)


def list_nodes(head: RayHead) -> list[dict[str, Any]]:
    """The cluster's nodes from the dashboard's state API (``node_id``, ``state``, ``resources_total``, ...)."""
    with urllib.request.urlopen(f"{head.dashboard_url}/api/v0/nodes?limit=100", timeout=10) as response:
        return json.loads(response.read())["data"]["result"]["result"]


@contextlib.contextmanager
def start_ray_worker(
    head: RayHead,
    num_cpus: int = 1,
    *,
    num_gpus: int = 0,
    resources: Mapping[str, float] | None = None,
    object_store_bytes: int = 200 * 1024**2,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> Iterator[RayWorkerNode]:
    """Join a worker node (``ray start --address <head> --block``) to ``head`` on this machine.

    The node has its own ports and temp dir and leads its own process group, so a test can stop it
    alone (:meth:`RayWorkerNode.kill`) to simulate a lost machine.

    Args:
        head: the cluster to join.
        num_cpus: logical CPUs of the node.
        num_gpus: logical GPUs of the node.
        resources: custom resources of the node.
        object_store_bytes: object store size.
        ready_timeout_s: how long to wait until the head lists the node as alive.

    Yields:
        The node; at the end its process group is stopped (if a test has not killed it already).

    Raises:
        RuntimeError: ``ray start`` ended early.
        TimeoutError: the node did not register in time.
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="avs-rw-", dir="/tmp"))
    # A resource only this node has: how its node id is found in the head's node list.
    marker = f"avs_node_{uuid.uuid4().hex[:8]}"
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        f"--address={head.address}",
        "--block",
        "--node-ip-address=127.0.0.1",
        *_node_args(num_cpus, num_gpus, {**(resources or {}), marker: 1}, object_store_bytes, temp_dir),
    ]
    log_path = temp_dir / "ray-start.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=temp_dir, env=head.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        end = time.monotonic() + ready_timeout_s
        node_id = None
        while node_id is None:
            if process.poll() is not None:
                output = log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"ray start --address ended (exit {process.poll()}):\n{output}")
            if time.monotonic() > end:
                raise TimeoutError(f"worker node did not join {head.address} within {ready_timeout_s}s")
            with contextlib.suppress(urllib.error.URLError, KeyError, TimeoutError):
                alive = [n for n in list_nodes(head) if n["state"] == "ALIVE" and marker in n["resources_total"]]
                node_id = alive[0]["node_id"] if alive else None
            time.sleep(1.0)
        yield RayWorkerNode(node_id, process)
    finally:
        _stop_group(process)
        shutil.rmtree(temp_dir, ignore_errors=True)
