"""serve_config.yaml validates with Ray's own schema and with the builder's typed arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema

from serve_app.app import build_app, tts_deployment_options
from serve_app.config import AppArgs
from serve_app.speech.service import TTSDeployment

CONFIG = Path(__file__).resolve().parents[2] / "serve_config.yaml"


def _config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def test_serve_config_passes_rays_schema() -> None:
    schema = ServeDeploySchema.model_validate(_config())
    assert schema.applications[0].import_path == "serve_app.app:build_app"


def test_serve_config_args_reach_tts_deployment_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = AppArgs.model_validate(_config()["applications"][0]["args"])
    options = tts_deployment_options(args.tts)
    assert options["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0, "resources": {}}
    assert options["autoscaling_config"]["max_replicas"] == 1
    assert options["max_queued_requests"] == 32
    # Ray itself accepts the options (it validates them in Deployment.options).
    configured = TTSDeployment.options(**options)
    assert configured.max_ongoing_requests == 4
    assert isinstance(build_app(args), Application)


def test_fractional_gpu_share_is_accepted_and_unknown_keys_are_rejected() -> None:
    args = AppArgs.model_validate({"tts": {"num_gpus": 0.5, "autoscaling": {"max_replicas": 4}}})
    assert tts_deployment_options(args.tts)["ray_actor_options"]["num_gpus"] == 0.5
    pinned = AppArgs.model_validate({"tts": {"resources": {"tts_node": 1}}})
    assert TTSDeployment.options(**tts_deployment_options(pinned.tts)).ray_actor_options["resources"] == {"tts_node": 1}
    with pytest.raises(ValidationError, match="num_gpu"):
        AppArgs.model_validate({"tts": {"num_gpu": 1}})
    with pytest.raises(ValidationError, match="num_gpus"):
        AppArgs.model_validate({"tts": {"num_gpus": -1}})
