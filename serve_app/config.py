"""Typed arguments of the application builder (the ``args`` block of ``serve_config.yaml``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AutoscalingArgs(BaseModel):
    """Autoscaling of the TTS deployment (Ray Serve ``autoscaling_config``)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(default=1, ge=0, description="Fewest TTS replicas kept running.")
    max_replicas: int = Field(default=1, ge=1, description="Most TTS replicas the autoscaler may start.")
    target_ongoing_requests: float = Field(
        default=2.0, gt=0, description="Requests in flight per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(default=10.0, ge=0, description="Sustained load needed before adding replicas.")
    downscale_delay_s: float = Field(default=120.0, ge=0, description="Idle time before removing replicas.")


class BatchingConfig(BaseModel):
    """Request batching of the TTS deployment: its Serve ``user_config``, changeable on a running replica.

    A field left out keeps the replica's settings value (``AVS_BATCH_MAX_SIZE``, ``AVS_BATCH_WAIT_S``).
    """

    model_config = ConfigDict(extra="forbid")

    batch_max_size: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Most pieces of text decoded together on one replica; 1 turns batching off.",
    )
    batch_wait_s: float | None = Field(
        default=None, ge=0, le=5, description="Longest wait for a batch to fill before decoding starts, seconds."
    )


class TTSDeploymentArgs(BaseModel):
    """Scheduling and queueing of the TTS model deployment."""

    model_config = ConfigDict(extra="forbid")

    num_gpus: float = Field(default=0.0, ge=0, description="GPU share per replica (fractions pack replicas).")
    num_cpus: float = Field(default=1.0, ge=0, description="CPUs reserved per replica.")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources per replica, e.g. {'tts_node': 1} to keep replicas on the nodes "
        "started with that resource (ray start --resources).",
    )
    autoscaling: AutoscalingArgs = Field(default_factory=AutoscalingArgs)
    max_ongoing_requests: int = Field(default=4, ge=1, description="Requests one replica works on at once.")
    max_queued_requests: int = Field(
        default=32, ge=-1, description="Requests waiting per caller before 503 (-1: unbounded)."
    )
    max_models_per_replica: int = Field(
        default=2, ge=1, description="Fine-tuned models/adapters one replica keeps loaded (LRU eviction)."
    )
    batching: BatchingConfig = Field(
        default_factory=BatchingConfig, description="Request batching (the deployment's user_config)."
    )
    health_check_period_s: float = Field(default=10.0, gt=0)
    health_check_timeout_s: float = Field(default=30.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(default=20.0, ge=0)


class JobRunnerArgs(BaseModel):
    """Scheduling of the JobRunner deployment (one replica working through queued jobs)."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(default=0.1, ge=0, description="CPUs reserved by the job runner replica.")
    max_concurrent_jobs: int = Field(default=1, ge=1, description="Jobs the runner works on at the same time.")


class AppArgs(BaseModel):
    """Arguments of :func:`serve_app.app.build_app`."""

    model_config = ConfigDict(extra="forbid")

    ingress_num_cpus: float = Field(default=0.25, ge=0, description="CPUs reserved by the HTTP ingress replica.")
    ingress_max_ongoing_requests: int = Field(
        default=256, ge=1, description="Requests the ingress replica handles at once (streams included)."
    )
    tts: TTSDeploymentArgs = Field(default_factory=TTSDeploymentArgs)
    jobs: JobRunnerArgs = Field(default_factory=JobRunnerArgs)
    settings: dict[str, object] = Field(
        default_factory=dict,
        description="Overrides of voice_core Settings fields (same names, lower case), applied on top of "
        "the environment.",
    )
