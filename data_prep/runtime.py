"""The Ray side of a build: connecting to (or starting) Ray, and placing the actor pools on the cluster.

Nothing here reads settings: the cluster address comes in as an argument (the CLI reads
``AVS_RAY_ADDRESS``), so the pipeline runs the same under ``ray job submit``, on a cluster and locally.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any

from data_prep.config import BuildConfig, ResourceOptions
from voice_core.errors import ConfigError

log = logging.getLogger("data_prep")

# A transcriber never reserves less than this, even on a full cluster (it then waits for CPUs).
MIN_TRANSCRIBE_CPUS = 0.25


def ensure_ray(local_num_cpus: int | None, ray_address: str | None = None) -> bool:
    """Connect to Ray: reuse a running session, join a cluster, or start a local one.

    ``RAY_ADDRESS`` (set by ``ray job submit``) means ``ray.init(address="auto")``; otherwise
    ``ray_address`` (``AVS_RAY_ADDRESS``) is joined when given; otherwise a local Ray starts with an
    explicit CPU count.

    Args:
        local_num_cpus: CPUs of a local Ray started here (None: the machine's).
        ray_address: cluster address from the settings.

    Returns:
        Whether this call started or joined Ray (and so should shut it down).
    """
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address="auto", log_to_driver=False)
    elif ray_address:
        ray.init(address=ray_address, log_to_driver=False)
    else:
        num_cpus = local_num_cpus or os.cpu_count() or 1
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


class RaySession:
    """Ray for one build: connected on first :meth:`connect`, shut down on exit only if this session connected.

    A build that has nothing to analyse or export never starts Ray.
    """

    def __init__(self, resources: ResourceOptions, ray_address: str | None = None) -> None:
        self.resources, self.ray_address = resources, ray_address
        self.started = False

    def connect(self) -> None:
        """Make sure Ray is up (see :func:`ensure_ray`)."""
        if not self.started:
            self.started = ensure_ray(self.resources.local_num_cpus, self.ray_address)

    def __enter__(self) -> RaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False


@dataclass(frozen=True)
class Placement:
    """Where and how the transcribers run, resolved against the cluster.

    Attributes:
        device: ``cpu`` or ``cuda``.
        compute_type: CTranslate2 compute type.
        num_gpus: GPUs per transcriber actor.
        num_cpus: CPUs reserved by each transcriber actor.
        workers: decoding workers per actor (clips transcribed at once).
        cpu_threads: CTranslate2 threads per worker.
    """

    device: str
    compute_type: str
    num_gpus: float
    num_cpus: float
    workers: int
    cpu_threads: int

    def to_dict(self) -> dict[str, Any]:
        """Manifest form (``placement`` in ``manifest.json``)."""
        return dataclasses.asdict(self)


def _largest_node_cpus() -> float:
    import ray

    cpus = [float(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]
    return max(cpus, default=0.0)


def place_transcribers(config: BuildConfig) -> Placement:
    """Decide devices and reservations, and check that the actor pools fit the cluster (they would wait forever).

    Raises:
        ConfigError: CUDA was asked for on a cluster without GPUs, or the pools need more CPUs than it has.
    """
    import ray

    res, tr = config.resources, config.transcribe
    cluster = ray.cluster_resources()
    total_cpus, total_gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    free = float(ray.available_resources().get("CPU", 0))
    num_gpus = res.transcribe_num_gpus
    if num_gpus is None:
        num_gpus = 1.0 if total_gpus >= 1 and tr.device != "cpu" else 0.0
    device = tr.device if tr.device != "auto" else ("cuda" if num_gpus > 0 else "cpu")
    if device == "cuda" and (num_gpus <= 0 or total_gpus <= 0):
        raise ConfigError("transcribe.device='cuda' but the Ray cluster has no GPU (or transcribe_num_gpus is 0)")
    compute_type = tr.compute_type if tr.compute_type != "auto" else ("float16" if device == "cuda" else "int8")
    num_cpus = res.transcribe_num_cpus
    if num_cpus is None:
        # Share what the light pools leave of the free CPUs; one actor lives on one node.
        share = (free - res.light_cpus()) / res.transcribe_pool_size
        largest = _largest_node_cpus()
        if largest > 0:
            share = min(share, largest)
        if device == "cuda":
            share = min(share, 1.0)
        num_cpus = max(MIN_TRANSCRIBE_CPUS, round(share, 4))
    need = res.actor_cpus(num_cpus)
    if need > total_cpus + 1e-9:
        raise ConfigError(
            f"the data-prep actor pools need {need:g} CPUs (segment {res.segment_pool_size}x{res.segment_num_cpus:g}, "
            f"transcribe {res.transcribe_pool_size}x{num_cpus:g}, analyze "
            f"{res.analyze_pool_size}x{res.analyze_num_cpus:g}) but the Ray cluster has {total_cpus:g}; lower the "
            "*_num_cpus options (fractions are fine) or the pool sizes, or Ray Data would wait forever"
        )
    if need > free + 1e-9:
        log.warning("the actor pools need %g CPUs but %g are free now: the build waits until they are", need, free)
    if device == "cuda":
        workers, cpu_threads = 1, max(1, int(num_cpus))
    else:
        workers, cpu_threads = res.transcribe_workers(num_cpus), res.transcribe_cpu_threads
    return Placement(device, compute_type, num_gpus, num_cpus, workers, cpu_threads)
