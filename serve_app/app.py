"""The application builder named by ``serve_config.yaml`` (``import_path: serve_app.app:build_app``)."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from serve_app.config import AppArgs, TTSDeploymentArgs
from voice_core.settings import Settings


def tts_deployment_options(args: TTSDeploymentArgs) -> dict[str, Any]:
    """Translate the TTS arguments into Ray Serve deployment options."""
    return {
        "ray_actor_options": {"num_cpus": args.num_cpus, "num_gpus": args.num_gpus, "resources": args.resources},
        "autoscaling_config": args.autoscaling.model_dump(),
        "max_ongoing_requests": args.max_ongoing_requests,
        "max_queued_requests": args.max_queued_requests,
        "health_check_period_s": args.health_check_period_s,
        "health_check_timeout_s": args.health_check_timeout_s,
        "graceful_shutdown_timeout_s": args.graceful_shutdown_timeout_s,
        # Changeable on running replicas (Serve calls TTSDeployment.reconfigure); unset keys: settings.
        "user_config": args.batching.model_dump(exclude_none=True),
    }


def build_app(args: AppArgs | dict[str, Any] | None = None) -> Application:
    """Build the Serve application: an ingress bound to the TTS deployment.

    Settings are read here, once, and passed to the deployments explicitly.

    Args:
        args: builder arguments (validated; unknown keys are rejected).

    Returns:
        The bound application, ready for ``serve.run`` or ``serve run serve_config.yaml``.
    """
    from serve_app.boundary import check_exposure
    from serve_app.ingress import Ingress
    from serve_app.jobs.runner import JobRunner
    from serve_app.speech.service import TTSDeployment

    parsed = args if isinstance(args, AppArgs) else AppArgs.model_validate(args or {})
    settings = Settings.load(**parsed.settings)
    check_exposure(settings, settings.host)
    tts = TTSDeployment.options(**tts_deployment_options(parsed.tts)).bind(settings, parsed.tts.max_models_per_replica)
    runner = JobRunner.options(ray_actor_options={"num_cpus": parsed.jobs.num_cpus}).bind(
        tts, settings, parsed.jobs.max_concurrent_jobs
    )
    return Ingress.options(
        ray_actor_options={"num_cpus": parsed.ingress_num_cpus},
        max_ongoing_requests=parsed.ingress_max_ongoing_requests,
    ).bind(tts, settings, runner)
