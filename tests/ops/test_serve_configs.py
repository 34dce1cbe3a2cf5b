"""The local and the production Serve configs validate with Ray's Serve schema and the builder's AppArgs."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.serve.schema import ServeDeploySchema

from serve_app.app import tts_deployment_options
from serve_app.config import AppArgs
from serve_app.speech.service import TTSDeployment
from tests.ops.manifests import PRODUCTION_CONFIG, SERVE_CONFIG, load_yaml


@pytest.mark.parametrize("path", [SERVE_CONFIG, PRODUCTION_CONFIG], ids=lambda p: p.name)
def test_config_validates_with_serve_schema_and_app_args(path: Path) -> None:
    config = load_yaml(path)
    schema = ServeDeploySchema.model_validate(config)
    assert [app.import_path for app in schema.applications] == ["serve_app.app:build_app"]
    args = AppArgs.model_validate(config["applications"][0]["args"])
    # Ray itself accepts the deployment options the builder derives (Deployment.options validates them).
    TTSDeployment.options(**tts_deployment_options(args.tts))


def test_production_config_uses_gpus_autoscaling_and_listens_on_all_interfaces() -> None:
    config = load_yaml(PRODUCTION_CONFIG)
    args = AppArgs.model_validate(config["applications"][0]["args"])
    assert args.tts.num_gpus in (0.5, 1)
    scaling = args.tts.autoscaling
    assert 1 <= scaling.min_replicas < scaling.max_replicas
    assert args.tts.max_queued_requests > 0  # bounded: overload answers 503, not an endless wait
    assert config["http_options"]["host"] == "0.0.0.0"
    local = load_yaml(SERVE_CONFIG)
    for key in ("name", "route_prefix", "import_path"):
        assert config["applications"][0][key] == local["applications"][0][key]


def test_every_app_arg_is_explained_in_the_local_config() -> None:
    text = SERVE_CONFIG.read_text(encoding="utf-8")
    fields = set(AppArgs.model_fields)
    for model in (AppArgs.model_fields["tts"].annotation, AppArgs.model_fields["jobs"].annotation):
        fields |= set(model.model_fields)
    fields |= set(AppArgs.model_fields["tts"].annotation.model_fields["autoscaling"].annotation.model_fields)
    missing = sorted(name for name in fields if f"{name}:" not in text)
    assert not missing, f"serve_config.yaml does not mention {missing}"
